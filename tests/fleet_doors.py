"""Doors and an operator for the fleet tests, built from the real parts.

:class:`FleetDoor` is a real :class:`DoorDaemon` (images camera over real LFW photos, file
relay, audit log, encrypted gallery) running on its own thread with the real fleet agent
attached through ``attach_fleet``, exactly as ``edgeface door`` wires it. Its identifier is
either the real recognition pipeline or the project's scripted identifier (for the
protocol-only scenarios, where what matters is the loop and the broker, not the faces).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
from edgeface.door.audit import AuditLog
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.service import attach_fleet, build_source
from edgeface.gallery import GalleryFile, create_key_file, load_key_file


def wait_for(cond: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def mqtt_table(
    broker: Any, device: str, keys: dict[str, Path], state_dir: Path, **extra: Any
) -> dict[str, Any]:
    return {
        "host": broker.host,
        "port": broker.port,
        "device_id": device,
        "password_file": str(broker.password_file(device)),
        "operator_public_key": str(keys["public_key"]),
        "fleet_key_file": str(keys["fleet_key"]),
        "state_dir": str(state_dir),
        "reconnect_min_s": 1.0,
        "reconnect_max_s": 2.0,
        "state_interval_s": 1.0,
        **extra,
    }


class FleetDoor:
    def __init__(
        self,
        root: Path,
        device: str,
        *,
        camera_dir: Path,
        identifier: Any,
        model: Any,
        mqtt: dict[str, Any] | None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.device = device
        root.mkdir(parents=True, exist_ok=True)
        if (root / "gallery.key").exists():  # the same door again (after a stop)
            self.gallery_file = GalleryFile(
                root / "gallery.efg", load_key_file(root / "gallery.key")
            )
        else:
            key = create_key_file(root / "gallery.key")
            self.gallery_file = GalleryFile(root / "gallery.efg", key)
            self.gallery_file.create(model=model)
        if hasattr(identifier, "gallery"):
            identifier.gallery = self.gallery_file.load()
        raw: dict[str, Any] = {
            "camera": {"kind": "images", "path": str(camera_dir), "loop": True, "fps": 5},
            "actuator": {"kind": "file", "path": str(root / "relay")},
            "audit": {"path": str(root / "audit.jsonl")},
            "gallery": {"path": str(root / "gallery.efg"), "key_file": str(root / "gallery.key")},
            "policy": {"min_face_size": 60, "unlock_s": 2.0, **(policy or {})},
            "recognition": {"max_fps": 5.0},
            "daemon": {"watchdog": False},
        }
        if mqtt is not None:
            raw["mqtt"] = mqtt
        self.cfg = parse_config(raw)
        self.daemon = DoorDaemon(
            self.cfg,
            source=build_source(self.cfg),
            identifier=identifier,
            actuator=FailSecureActuator(FileRelayActuator(root / "relay")),
            audit=AuditLog(root / "audit.jsonl", fsync=False),
        )
        self.agent = None
        self.thread: threading.Thread | None = None
        self.code: int | None = None

    def start(self) -> FleetDoor:
        self.agent = attach_fleet(self.daemon, self.cfg)
        self.thread = threading.Thread(target=self._run, name=f"door-{self.device}", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        self.code = self.daemon.run()

    def stop(self) -> None:
        self.daemon.request_stop()
        if self.thread is not None:
            self.thread.join(30)
        if self.agent is not None:
            self.agent.close()

    def records(self) -> list[dict[str, Any]]:
        path = self.root / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def events(self) -> list[str]:
        return [r["event"] for r in self.records()]

    def relay(self) -> str:
        return read_relay_state(self.root / "relay")

    def gallery_ids(self) -> set[str]:
        g = GalleryFile(self.root / "gallery.efg", load_key_file(self.root / "gallery.key")).load()
        return {i.id for i in g.identities()}


def write_fleet_toml(path: Path, broker: Any, keys: dict[str, Path], op_dir: Path) -> Path:
    """The operator's fleet.toml: its broker account, keys, state and gallery in ``op_dir``."""
    path.write_text(
        f"""
[mqtt]
host = "{broker.host}"
port = {broker.port}
device_id = "operator"
password_file = "{broker.password_file("operator")}"
[operator]
signing_key = "{keys["signing_key"]}"
fleet_key_file = "{keys["fleet_key"]}"
state_dir = "{op_dir / "state"}"
gallery = "{op_dir / "gallery.efg"}"
gallery_key_file = "{op_dir / "gallery.key"}"
connect_timeout_s = 3
"""
    )
    return path
