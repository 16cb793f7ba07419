"""The operator's side: sign and publish gallery changes, snapshots and door commands.

The operator's workstation holds the Ed25519 signing key, the fleet key and the *operator
gallery* (an ordinary encrypted edgeface gallery, enrolled with ``edgeface gallery enroll``).
``fleet enroll`` publishes people from it, ``fleet remove`` takes people out of it and off every
door, ``fleet push`` publishes the whole of it as a snapshot and compacts the retained log.

Every message gets the next sequence number under a lock file, is written to
``<state_dir>/log/`` *before* it is published, and counts as published only once the broker
acknowledged it (QoS 1); a message whose publish failed is sent again, first, by the next
command, so the doors never see a gap that is not eventually filled.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.fleet import envelope, topics
from edgeface.fleet.apply import MAX_COMMAND_LIFETIME_S, MAX_UNLOCK_LIFETIME_S, model_header
from edgeface.fleet.config import MqttConfig
from edgeface.fleet.errors import FleetError
from edgeface.gallery.durable import WriterLock
from edgeface.storage import atomic_write


@dataclass(frozen=True)
class OperatorConfig:
    """``fleet.toml``: ``[mqtt]`` (the operator's broker account) and ``[operator]``."""

    mqtt: MqttConfig
    signing_key: Path
    fleet_key_file: Path
    state_dir: Path
    gallery: Path
    gallery_key_file: Path
    connect_timeout_s: float = 10.0


def load_operator_config(path: str | Path) -> OperatorConfig:
    from edgeface.errors import ConfigError
    from edgeface.fleet.config import load_mqtt_section
    from edgeface.schema import Section, read_toml

    p = Path(path)
    raw, base = read_toml(p)
    try:
        for key in raw:
            if key not in ("mqtt", "operator"):
                raise ConfigError(f"{key}: unknown section (known: mqtt, operator)")
        mqtt = load_mqtt_section(raw.get("mqtt"), base)
        if mqtt is None:
            raise ConfigError('mqtt: required section (host, device_id = "operator", ...)')
        s = Section(raw.get("operator"), "operator")

        def path(key: str) -> Path:
            return base / s.get(key, str, required=True)

        cfg = OperatorConfig(
            mqtt=mqtt,
            signing_key=path("signing_key"),
            fleet_key_file=path("fleet_key_file"),
            state_dir=base / s.get("state_dir", str, "."),
            gallery=path("gallery"),
            gallery_key_file=path("gallery_key_file"),
            connect_timeout_s=s.get("connect_timeout_s", float, 10.0),
        )
        s.finish()
        return cfg
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def create_operator_keys(directory: str | Path) -> dict[str, Path]:
    """New signing key (0600), its public key (give it to every device) and fleet key (0600)."""
    from edgeface.gallery.keys import create_key_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {"signing_key": d / "operator.key", "public_key": d / "operator.pub"}
    out["fleet_key"] = d / "fleet.key"
    create_key_file(out["signing_key"])
    create_key_file(out["fleet_key"])
    pub = envelope.public_key_hex(envelope.load_signing_key(out["signing_key"]))
    atomic_write(out["public_key"], (pub + "\n").encode(), what="public key")
    os.chmod(out["public_key"], 0o644)
    return out


class OperatorState:
    """``operator-state.json``: last sequence numbers used and the last one acknowledged."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "operator-state.json"
        self.log_dir = directory / "log"

    def read(self) -> dict[str, int]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            raise FleetError(f"{self.path}: unreadable operator state ({exc})") from exc
        return {k: int(raw.get(k, 0)) for k in ("seq", "published", "command_seq", "snapshot")}

    def write(self, state: dict[str, int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(state, sort_keys=True).encode(), what="operator state")

    def message_path(self, seq: int) -> Path:
        return self.log_dir / f"{seq:010d}.msg"


class Operator:
    """Connected to the broker for the length of one ``with`` block."""

    def __init__(self, cfg: OperatorConfig) -> None:
        from edgeface.gallery.keys import load_key_file

        self.cfg = cfg
        self.signer = envelope.load_signing_key(cfg.signing_key)
        self.fleet_key = load_key_file(cfg.fleet_key_file).key
        self.state = OperatorState(cfg.state_dir)
        self.fleet = cfg.mqtt.fleet_topic
        self.client: Any = None
        self._lock = WriterLock(cfg.state_dir / "operator-state.json", 30.0)

    # --- connection ---------------------------------------------------------------------------

    def __enter__(self) -> Operator:
        from edgeface.fleet.link import make_client

        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        try:
            connected = threading.Event()
            refused: list[str] = []
            client = make_client(self.cfg.mqtt)

            def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
                if getattr(reason, "is_failure", False):
                    refused.append(str(reason))
                connected.set()

            client.on_connect = on_connect
            client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=30)
            client.loop_start()
            self.client = client
            if not connected.wait(self.cfg.connect_timeout_s) or refused:
                why = refused[0] if refused else f"no answer in {self.cfg.connect_timeout_s:.0f} s"
                raise FleetError(
                    f"mqtt: broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port} unreachable ({why})"
                )
            self._resend_unacknowledged()
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *_exc: Any) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        self._lock.__exit__(None, None, None)

    def _publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(self.cfg.connect_timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise FleetError(f"mqtt: publishing to {topic} failed ({exc})") from exc
        if not info.is_published():
            raise FleetError(f"mqtt: the broker did not acknowledge {topic} in time")

    def _resend_unacknowledged(self) -> None:
        st = self.state.read()
        for seq in range(st["published"] + 1, st["seq"] + 1):
            p = self.state.message_path(seq)
            if p.exists():
                topic = (
                    topics.snapshot_topic(self.fleet)
                    if seq == st["snapshot"]
                    else topics.log_topic(self.fleet, seq)
                )
                self._publish(topic, p.read_bytes(), retain=True)
            st["published"] = seq
            self.state.write(st)

    # --- gallery changes ----------------------------------------------------------------------

    def _gallery(self) -> Any:
        from edgeface.gallery import GalleryFile, load_key_file

        return GalleryFile(self.cfg.gallery, load_key_file(self.cfg.gallery_key_file))

    def _emit(self, kind: str, op: str, body: bytes, model: Any) -> int:
        st = self.state.read()
        seq = st["seq"] + 1
        header = {
            "kind": kind,
            "op": op,
            "seq": seq,
            "issued": round(time.time(), 3),
            "embedder": model_header(model),
        }
        sealed = envelope.seal(header, envelope.encrypt(self.fleet_key, body, header), self.signer)
        self.state.log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state.message_path(seq), sealed, what="fleet message")
        st["seq"] = seq
        if kind == "snapshot":
            st["snapshot"] = seq
        self.state.write(st)  # the number is used from now on, published or not
        topic = (
            topics.snapshot_topic(self.fleet)
            if kind == "snapshot"
            else topics.log_topic(self.fleet, seq)
        )
        self._publish(topic, sealed, retain=True)
        st["published"] = seq
        self.state.write(st)
        return seq

    @staticmethod
    def _records(g: Any, ids: list[str]) -> list[envelope.IdentityRecord]:
        import numpy as np

        out = []
        for iid in ids:
            info = g.info(iid)
            temps = g.templates(iid)
            out.append(
                envelope.IdentityRecord(
                    iid,
                    info.name,
                    np.stack([t.embedding for t in temps]).astype(np.float32),
                    [t.quality for t in temps],
                    [t.created for t in temps],
                )
            )
        return out

    def enroll(self, names_or_ids: list[str]) -> tuple[int, list[str]]:
        """Publish these people (from the operator gallery) to every door; (seq, ids)."""
        g = self._gallery().load()
        ids = [g.find(x).id for x in names_or_ids]
        if g.model is None:
            raise FleetError(f"{self.cfg.gallery}: the operator gallery has no embedder yet")
        body = envelope.pack_identities(self._records(g, ids))
        return self._emit("change", "upsert", body, g.model), ids

    def remove(self, names_or_ids: list[str]) -> tuple[int, list[str]]:
        """Take people off every door and out of the operator gallery; (seq, ids)."""
        from edgeface.gallery import IdentityNotFoundError

        gf = self._gallery()
        with gf.edit(purge_backup=True) as g:
            ids = []
            for x in names_or_ids:
                try:
                    ids.append(g.remove(g.find(x).id).id)
                except IdentityNotFoundError:
                    if not _is_uuid(x):  # a misspelt name must not become a silent no-op
                        raise
                    ids.append(x)  # already gone here: still remove it from the doors by id
            model = g.model
        if model is None:
            raise FleetError(f"{self.cfg.gallery}: the operator gallery has no embedder yet")
        body = json.dumps({"ids": ids}).encode()
        return self._emit("change", "remove", body, model), ids

    def push(self) -> tuple[int, int]:
        """Snapshot of the whole operator gallery; older retained log entries are cleared."""
        g = self._gallery().load()
        if g.model is None:
            raise FleetError(f"{self.cfg.gallery}: the operator gallery has no embedder yet")
        people = self._records(g, [i.id for i in g.identities()])
        seq = self._emit("snapshot", "snapshot", envelope.pack_identities(people), g.model)
        for old in sorted(self.state.log_dir.glob("*.msg")):
            n = int(old.stem)
            if n < seq:
                self._publish(topics.log_topic(self.fleet, n), b"", retain=True)
        return seq, len(people)

    # --- commands -----------------------------------------------------------------------------

    def command(
        self,
        command: str,
        *,
        target: str = "all",
        value: str | None = None,
        ttl_s: float = 60.0,
        duration_s: float | None = None,
    ) -> int:
        limit = MAX_UNLOCK_LIFETIME_S if command == "unlock" else MAX_COMMAND_LIFETIME_S
        if not 0 < ttl_s <= limit:
            raise FleetError(f"--ttl: must be in (0, {limit:.0f}] s for {command}")
        if command == "unlock" and target == "all":
            raise FleetError("unlock: name one door (--device); never all at once")
        st = self.state.read()
        seq = st["command_seq"] + 1
        now = time.time()
        header: dict[str, Any] = {
            "kind": "command",
            "seq": seq,
            "command": command,
            "target": "*" if target == "all" else target,
            "issued": round(now, 3),
            "expires": round(now + ttl_s, 3),
        }
        if value is not None:
            header["value"] = value
        if duration_s is not None:
            header["duration_s"] = duration_s
        st["command_seq"] = seq
        self.state.write(st)
        self._publish(
            topics.command_topic(self.fleet, target),
            envelope.seal(header, b"", self.signer),
            retain=False,
        )
        return seq
