"""``edgeface bundle install | rollback | list | status``: the device's side of bundles.

Registered by :mod:`edgeface.cli.bundle_cmd` under the same ``bundle`` command. Device
options default from the environment so a remote command stays short:
``$EDGEFACE_DEVICE_ROOT``, ``$EDGEFACE_TRUSTED_KEYS``, ``$EDGEFACE_RESTART_COMMAND`` and
``$EDGEFACE_HEALTH_COMMAND``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from edgeface.cli.options import print_json

#: the device defaults (edgeface.bundle.device / keys hold the same values; not imported here
#: so that ``edgeface --help`` loads nothing of the bundle code)
DEFAULT_ROOT = "/var/lib/edgeface"
DEFAULT_TRUSTED_KEYS = "/etc/edgeface/trusted-keys"


def _print_json(obj: Any) -> None:
    print_json(obj, sort_keys=True, ensure_ascii=True)


def register_device(bsub: argparse._SubParsersAction) -> None:
    """Add the device's actions to ``bundle``'s sub-parsers."""
    a = bsub.add_parser("install", help="install a bundle on this device (self-test, rollback)")
    a.add_argument("bundle", type=Path)
    _device_options(a)
    a.add_argument("--allow-downgrade", action="store_true", help="accept an older version")
    a.add_argument("--backend", help="self-test backend (default: the bundle's target)")
    a.add_argument(
        "--import-gallery",
        type=Path,
        help="first install: copy (or re-embed) this gallery into the release",
    )
    from edgeface.cli.gallery_options import add_key_options

    add_key_options(a)
    a.set_defaults(func=_install)

    for name, fn, text in (
        ("rollback", _rollback, "switch back to the previous release"),
        ("list", _list, "releases on this device and whether they are complete"),
        ("status", _status, "current and previous release, anti-rollback counter"),
    ):
        a = bsub.add_parser(name, help=text)
        _device_options(a)
        a.set_defaults(func=fn)


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("EDGEFACE_DEVICE_ROOT", DEFAULT_ROOT)),
        help="device root with releases/ and current ($EDGEFACE_DEVICE_ROOT or %(default)s)",
    )
    p.add_argument(
        "--trusted-keys",
        type=Path,
        default=Path(os.environ.get("EDGEFACE_TRUSTED_KEYS", DEFAULT_TRUSTED_KEYS)),
        help="directory of trusted public keys (default $EDGEFACE_TRUSTED_KEYS or %(default)s)",
    )
    p.add_argument(
        "--restart-command",
        help="run after a switch; '' for none (default $EDGEFACE_RESTART_COMMAND or "
        "'systemctl try-restart edgeface-door.service')",
    )
    p.add_argument(
        "--health-command",
        help="must exit 0 after the switch or the device rolls back; '' for none (default "
        "$EDGEFACE_HEALTH_COMMAND or 'edgeface door --check --no-camera --config "
        "/etc/edgeface/door.toml')",
    )
    p.add_argument("--json", action="store_true")


def _device(args: argparse.Namespace) -> Any:
    from edgeface.bundle.device import DEFAULT_HEALTH, DEFAULT_RESTART, Device, DeviceConfig

    def command(value: str | None, env: str, default: list[str]) -> list[str]:
        if value is None:
            value = os.environ.get(env)
        return list(default) if value is None else shlex.split(value)

    cfg = DeviceConfig(
        root=args.root,
        trusted_keys=args.trusted_keys,
        restart_command=command(args.restart_command, "EDGEFACE_RESTART_COMMAND", DEFAULT_RESTART),
        health_command=command(args.health_command, "EDGEFACE_HEALTH_COMMAND", DEFAULT_HEALTH),
        backend=getattr(args, "backend", None),
    )
    quiet = args.json
    return Device(cfg, log=None if quiet else lambda m: print(m, file=sys.stderr))


def _install(args: argparse.Namespace) -> int:
    from edgeface.cli.gallery_options import key_from_args

    device = _device(args)
    r = device.install(
        args.bundle,
        allow_downgrade=args.allow_downgrade,
        gallery_key=lambda: key_from_args(args),
        import_gallery=args.import_gallery,
    )
    if args.json:
        _print_json(r)
    else:
        secs = r["seconds"]
        total = sum(secs.values())
        print(
            f"installed {r['name']} version {r['version']} (previous {r['previous']}); "
            f"gallery: {r['gallery']}; {total:.2f} s "
            f"({', '.join(f'{k[:-2]} {v:.2f}' for k, v in secs.items())})"
        )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    r = _device(args).rollback()
    if args.json:
        _print_json(r)
    else:
        print(f"rolled back: current {r['current']}, previous {r['previous']}; {r['health']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = _device(args).list()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no releases")
    for r in rows:
        print(
            f"{r['version']:>6}  {r['role']:<8}  {r.get('name', '?'):<20}  "
            f"{r.get('created', ''):<20}  {r['state']}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    s = _device(args).status()
    if args.json:
        _print_json(s)
    else:
        print(
            f"current {s['current']}  previous {s['previous']}  "
            f"highest installed {s['highest_version']}  last {s['last']}"
        )
    return 0
