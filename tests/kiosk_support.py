"""Test support for the kiosk: a replay camera whose scene a test switches, and a real kiosk
server (uvicorn on 127.0.0.1, random port) around the real pipeline and gallery.

The camera is the ordinary :class:`ImageDirectorySource` replaying real LFW photos; the only
addition is which list of photos is "in front of the camera" at the moment, so one test can
show a stranger, then the person enrolling, then a *different* photo of that person.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.camera.base import FrameSource
from edgeface.camera.replay import ImageDirectorySource

PIN = "246810"


class SceneCamera(FrameSource):
    """Replays one of several photo lists (looping, paced); ``show(name)`` switches."""

    kind = "images"
    live = False

    def __init__(self, scenes: dict[str, Sequence[Path]], *, fps: float = 12.0) -> None:
        super().__init__(name="scenes")
        self.sources = {
            k: ImageDirectorySource(files=list(v), fps=fps, loop=True) for k, v in scenes.items()
        }
        self.current = "empty"
        self.blank = np.full((250, 250, 3), 30, np.uint8)

    def show(self, scene: str | None) -> None:
        self.current = scene or "empty"

    def describe(self) -> str:
        return "LFW scene replay"

    def _open(self) -> None:
        pass

    def _read(self) -> np.ndarray:
        src = self.sources.get(self.current)
        if src is None:  # nobody in front of the camera
            time.sleep(1 / 12)
            return self.blank
        return src.read().image

    def _close(self) -> None:
        for s in self.sources.values():
            s.close()


def kiosk_config(tmp: Path, **sections: dict[str, Any]) -> Any:
    from edgeface.gallery import create_key_file
    from edgeface.kiosk.config import parse_config

    key = tmp / "gallery.key"
    if not key.exists():
        create_key_file(key)
    raw: dict[str, Any] = {
        "state_dir": str(tmp / "state"),
        "camera": {"kind": "images", "path": str(tmp)},
        "gallery": {"path": str(tmp / "state" / "gallery.efg"), "key_file": str(key)},
        "operator": {"pin_failures": 3, "pin_pause_s": 30},
        "enroll": {"capture_timeout_s": 60},
        # the scenes are LFW press photos (photos of photos to a liveness check); liveness
        # has its own kiosk replay of live and printed frames (test_kiosk_liveness.py)
        "liveness": {"required": False},
    }
    for name, table in sections.items():
        raw[name] = {**raw.get(name, {}), **table}
    return parse_config(raw, base=tmp)


class KioskServer:
    """A running kiosk: ``url``, ``engine``, ``kiosk`` (handlers), ``camera``."""

    def __init__(
        self,
        cfg: Any,
        camera: SceneCamera,
        pipeline: Any,
        *,
        pin: str | None = PIN,
        reconnect: Any = None,
        liveness: Any = None,
        challenge_side: Any = None,
    ):
        import uvicorn

        from edgeface.kiosk.app import create_app
        from edgeface.kiosk.secrets_store import PinStore, ensure_private_dir
        from edgeface.kiosk.service import build_engine

        ensure_private_dir(cfg.state_dir)
        if pin:
            PinStore(cfg.state_dir).set(pin)
        self.cfg = cfg
        self.camera = camera
        self.engine = build_engine(
            cfg,
            source=camera,
            pipeline=pipeline,
            reconnect=reconnect,
            liveness=liveness,
            challenge_side=challenge_side,
        )
        self.app = create_app(self.engine)
        self.kiosk = self.app.state.kiosk
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> KioskServer:
        self.engine.start()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "kiosk server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.kiosk.closing.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.stop()
        self.sock.close()

    def wait_state(self, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            snap = self.engine.snapshot(None)
            if pred(snap):
                return snap
            assert time.monotonic() < deadline, f"state never reached; last: {snap}"
            time.sleep(0.05)

    def audit_events(self) -> list[str]:
        lines = self.cfg.audit.path.read_text().splitlines()
        return [json.loads(line)["event"] for line in lines]


@contextmanager
def running_kiosk(cfg: Any, camera: SceneCamera, pipeline: Any, **kw: Any) -> Iterator[KioskServer]:
    srv = KioskServer(cfg, camera, pipeline, **kw).start()
    try:
        yield srv
    finally:
        srv.stop()


def enroll_from_files(cfg: Any, pipeline: Any, name: str, files: Sequence[Path]) -> str:
    """Enroll ``name`` straight into the kiosk's gallery (the CLI's path, not the UI's)."""
    from edgeface.gallery.enroll import Enroller
    from edgeface.kiosk.service import gallery_file, open_gallery

    open_gallery(cfg, pipeline)
    plan = Enroller(pipeline).from_files(name, files)
    assert plan.templates, [c.reason for c in plan.candidates]
    with gallery_file(cfg).edit() as g:
        return g.add_identity(name, plan.templates).id


class Client:
    """A raw HTTP client that keeps the session cookie and the CSRF token like the page does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = {"Host": f"{self.host}:{self.port}"}
        if self.cookie:
            h["Cookie"] = self.cookie
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            r = conn.getresponse()
            raw = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()
        data: Any = raw
        if hdrs.get("content-type", "").startswith("application/json"):
            data = json.loads(raw)
        return r.status, hdrs, data

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path, **kw)

    def start(self) -> dict[str, Any]:
        status, hdrs, data = self.get("/api/session")
        assert status == 200
        m = re.match(r"kiosk_session=([^;]+)", hdrs["set-cookie"])
        assert m
        self.cookie = f"kiosk_session={m.group(1)}"
        self.csrf = data["csrf"]
        cookie = hdrs["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        return data

    def post(
        self, path: str, obj: Any = None, *, raw: bytes | None = None, **headers: str | None
    ) -> tuple[int, dict[str, str], Any]:
        h: dict[str, str | None] = {
            "Origin": self.url,
            "X-CSRF-Token": self.csrf,
            "Content-Type": "application/json",
        }
        h.update({k.replace("_", "-"): v for k, v in headers.items()})
        body = raw if raw is not None else json.dumps({} if obj is None else obj).encode()
        if "Content-Length" not in h:
            h["Content-Length"] = str(len(body))
        status, hdrs, data = self.request("POST", path, body, h)  # type: ignore[arg-type]
        if status == 200 and isinstance(data, dict) and "csrf" in data:
            self.csrf = data["csrf"]
        return status, hdrs, data
