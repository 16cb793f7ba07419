"""``edgeface door --check`` for a unit with ``[mqtt]``: keys readable, state writable, and the
broker answers with a successful CONNACK (credentials and TLS included) within a timeout."""

from __future__ import annotations

import os
import threading
from typing import Any

from edgeface.errors import EdgefaceError
from edgeface.fleet.config import MqttConfig


def check_mqtt(cfg: MqttConfig, check: Any, *, timeout_s: float = 5.0) -> list[Any]:
    """``check(name, fn)`` is the door's check runner (one result per line)."""
    out = []

    def keys() -> str:
        if not cfg.accepts_fleet:
            return "no operator_public_key: publishing only, no changes or commands accepted"
        from edgeface.fleet.envelope import load_public_key

        load_public_key(cfg.operator_public_key)  # type: ignore[arg-type]
        cfg.fleet_key()
        d = cfg.state_dir if cfg.state_dir.exists() else cfg.state_dir.parent
        if not os.access(d, os.W_OK):
            raise EdgefaceError(f"{d}: fleet state directory not writable")
        return f"operator key and fleet key readable, state in {cfg.state_dir}"

    def broker() -> str:
        from edgeface.fleet.link import make_client

        client = make_client(cfg)
        done = threading.Event()
        result: list[str] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            result.append(str(reason) if getattr(reason, "is_failure", False) else "")
            done.set()

        client.on_connect = on_connect
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        try:
            if not done.wait(timeout_s):
                raise EdgefaceError(f"{cfg.host}:{cfg.port}: no MQTT answer in {timeout_s:g} s")
            if result[0]:
                raise EdgefaceError(f"{cfg.host}:{cfg.port}: connection refused ({result[0]})")
        finally:
            client.disconnect()
            client.loop_stop()
        return f"{cfg.host}:{cfg.port} accepted {cfg.user} ({'TLS' if cfg.tls else 'plain'})"

    out.append(check("mqtt keys", keys))
    out.append(check("mqtt broker", broker))
    return out
