"""``edgeface kiosk --config FILE [--check]``, ``kiosk invite NAME`` and ``kiosk pin``.

Starlette and uvicorn (the ``kiosk`` extra) are imported only when the server starts, so
``edgeface --help`` and ``kiosk invite`` work on a base install.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeface.kiosk.config import KioskConfig

DEFAULT_CONFIG = "/etc/edgeface/kiosk.toml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kiosk",
        help="run the touch-screen kiosk web app (or --check it, invite someone, set the PIN)",
        description="kiosk [serve] --config FILE [--check] | kiosk invite NAME | kiosk pin",
    )
    p.add_argument(
        "action",
        nargs="?",
        default="serve",
        choices=["serve", "invite", "pin", "wait"],
        help="serve (default): run the web app; invite NAME: print a one-time enrollment code; "
        "pin: set the operator PIN (read from stdin); wait: until the page answers "
        "(the browser unit's ExecStartPre)",
    )
    p.add_argument("name", nargs="?", help="invite: the display name of the person invited")
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"kiosk.toml (default {DEFAULT_CONFIG})"
    )
    p.add_argument("--check", action="store_true", help="validate the setup; exit 1 on failure")
    p.add_argument("--no-camera", action="store_true", help="with --check: skip the camera")
    p.add_argument("--valid-hours", type=float, help="invite: how long the code works")
    p.add_argument("--port", type=int, help="serve, wait: override server.port")
    p.add_argument("--timeout", type=float, default=120.0, help="wait: give up after (s)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_kiosk)


def _kiosk(args: argparse.Namespace) -> int:
    from edgeface.errors import ConfigError
    from edgeface.kiosk.config import load_config

    if args.action == "wait" and args.port is not None:
        return _wait("127.0.0.1", args.port, args.timeout)  # the browser user may not read /etc
    cfg = load_config(args.config)
    if args.action == "wait":
        return _wait(cfg.server.host, cfg.server.port, args.timeout)
    if args.action == "invite":
        if not args.name:
            raise ConfigError("kiosk invite: give the person's name, e.g. kiosk invite 'Ada L'")
        return _invite(cfg, args)
    if args.name:
        raise ConfigError(f"kiosk {args.action}: unexpected argument {args.name!r}")
    if args.action == "pin":
        return _pin(cfg)
    if args.check:
        from edgeface.door.health import report
        from edgeface.kiosk.service import run_checks

        return report(run_checks(cfg, camera=not args.no_camera))
    return _serve(cfg, args)


def _invite(cfg: KioskConfig, args: argparse.Namespace) -> int:
    from edgeface.kiosk.secrets_store import InviteStore, ensure_private_dir

    hours = args.valid_hours if args.valid_hours is not None else cfg.enroll.invite_valid_hours
    if not hours > 0:
        from edgeface.errors import ConfigError

        raise ConfigError("--valid-hours: must be > 0")
    ensure_private_dir(cfg.state_dir)
    code = InviteStore(cfg.state_dir).create(args.name, hours * 3600.0)
    print(f"invitation for {args.name.strip()}: {code[:5]} {code[5:]}")
    print(f"valid for {hours:g} h, once; type it on the kiosk under Enroll > I have a code")
    return 0


def _pin(cfg: KioskConfig) -> int:
    from edgeface.errors import ConfigError
    from edgeface.kiosk.secrets_store import PinStore, ensure_private_dir

    store = PinStore(cfg.state_dir, min_digits=cfg.operator.pin_min_digits)
    if sys.stdin.isatty():
        pin = getpass.getpass("new operator PIN (digits): ")
        if getpass.getpass("repeat: ") != pin:
            raise ConfigError("the two PINs differ")
    else:
        pin = sys.stdin.readline().strip()
    ensure_private_dir(cfg.state_dir)
    store.set(pin)
    print(f"operator PIN set ({store.path})")
    return 0


def _serve(cfg: KioskConfig, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvicorn

        from edgeface.kiosk.app import create_app
    except ImportError as exc:
        from edgeface.errors import ConfigError

        raise ConfigError(
            f"the kiosk needs its extra: pip install 'edgeface[kiosk]' ({exc.name} missing)"
        ) from exc
    from edgeface.kiosk.service import build_engine

    server_cfg = cfg.server
    port = args.port if args.port is not None else server_cfg.port
    from edgeface.door.notify import Notifier

    sock = _listen(server_cfg.host, port)  # before the models load: a taken port fails fast
    notifier = Notifier()
    engine = build_engine(cfg)
    engine.watchdog = notifier.watchdog
    app = create_app(engine)
    engine.start()
    sock.listen(128)  # connections from here on wait for uvicorn instead of being refused
    notifier.ready(f"kiosk on http://{server_cfg.host}:{port}")
    try:
        config = uvicorn.Config(
            app,
            host=server_cfg.host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        server = _server_class(uvicorn)(config, app.state.kiosk.closing)
        logging.getLogger("edgeface.kiosk").info(
            "kiosk on http://%s:%d (%s)", server_cfg.host, port, engine.source.describe()
        )
        server.run(sockets=[sock])
    finally:
        notifier.stopping()
        engine.stop()
        sock.close()
    return 0


def _server_class(uvicorn: Any) -> Any:
    """uvicorn's server, stopping on SIGTERM/SIGINT *and returning*: uvicorn re-raises the
    signal after its shutdown, which would kill the process before the engine is stopped
    and the audit log's ``stop`` record written. Open preview streams end first."""

    class KioskServer(uvicorn.Server):  # type: ignore[name-defined,misc]
        def __init__(self, config: Any, closing: threading.Event) -> None:
            super().__init__(config)
            self.closing = closing

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.closing.set()
            self.should_exit = True

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)

    return KioskServer


def _listen(host: str, port: int) -> socket.socket:
    from edgeface.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"server.port: cannot listen on {host}:{port} ({exc.strerror})") from exc
    sock.set_inheritable(True)
    return sock


def _wait(host: str, port: int, timeout: float) -> int:
    """Exit 0 once ``/healthz`` answers, 12 (camera/unavailable) after ``timeout`` seconds."""
    import http.client
    import time

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            conn = http.client.HTTPConnection(host.strip("[]"), port, timeout=3)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return 0
            last = f"HTTP {status}"
        except OSError as exc:
            last = exc.strerror or str(exc)
        if time.monotonic() >= deadline:
            print(
                f"edgeface: error: kiosk at {host}:{port} not answering after {timeout:g} s "
                f"({last})",
                file=sys.stderr,
            )
            return 12
        time.sleep(0.5)
