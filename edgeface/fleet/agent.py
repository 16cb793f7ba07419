"""The device side: a door (or kiosk) on the fleet, through :mod:`edgeface.door.port` only.

What it does, all off the door's loop:

* ``<prefix>/availability``: ``online`` retained on connect, ``offline`` as the last will;
* ``<prefix>/state``: retained JSON, on connect, on every change of relay, lockout, lockdown,
  camera or gallery, and every ``state_interval_s``;
* ``<prefix>/event``: QoS 1 JSON per decision record (granted, denied, lockout, fault...),
  identity id and (if ``display_names``) the display name; never images or embeddings;
* ``<prefix>/audit``: every audit record, as written (its hash chain intact). The highest seq
  the broker acknowledged is persisted, and on each connect everything after it is re-read
  from the audit files and sent again, so records written while the broker was away arrive
  late but none is skipped;
* Home Assistant discovery, again whenever ``homeassistant/status`` says ``online``;
* signed gallery changes (:class:`~edgeface.fleet.apply.ChangeApplier`) and commands
  (:class:`~edgeface.fleet.apply.CommandGate` -> ``door.submit``); what is applied or refused
  is audited and reported on ``<prefix>/fleet``.

The door needs only ``status() -> dict`` and ``submit(DoorCommand)``; a kiosk provides the same
two methods to plug in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edgeface import __version__
from edgeface.door.port import DoorCommand
from edgeface.fleet import topics
from edgeface.fleet.apply import ResendAudit
from edgeface.fleet.config import MqttConfig
from edgeface.fleet.discovery import discovery_messages
from edgeface.fleet.errors import RefusedMessage
from edgeface.fleet.link import MqttLink

log = logging.getLogger("edgeface.fleet")

#: audit event -> (HA event_type, reason) for ``<prefix>/event``
EVENTS: dict[str, tuple[str, str]] = {
    "unlock": ("access_granted", ""),
    "remote_unlock": ("remote_unlock", ""),
    "rejected": ("access_denied", "not recognized"),
    "unlock_refused": ("access_denied", "lockdown"),
    "lockout": ("lockout", ""),
    "fault": ("fault", ""),
    "lockdown_on": ("lockdown", "on"),
    "lockdown_off": ("lockdown", "off"),
}
#: fields an event may carry over from the audit record (nothing biometric)
EVENT_FIELDS = ("identity_id", "score", "threshold", "votes", "scope", "pause_s", "kind", "error")
STATE_KEYS = ("relay", "lockout", "lockdown", "camera")


class Door(Protocol):
    def status(self) -> dict[str, Any]: ...

    def submit(self, cmd: DoorCommand) -> None: ...


def records_after(path: Path, seq: int, limit: int = 500) -> list[dict[str, Any]]:
    """Audit records with ``seq`` greater than ``seq`` (at most ``limit``), oldest first,
    from the log and, when needed, its rotated predecessors."""
    from edgeface.door.audit import rotated_files

    files = [*rotated_files(path), path]
    chunks: list[list[dict[str, Any]]] = []
    for f in reversed(files):
        try:
            lines = f.read_bytes().splitlines()
        except OSError:
            continue
        recs = []
        for line in lines:
            try:
                rec = json.loads(line)
                if int(rec["seq"]) > seq:
                    recs.append(rec)
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: the chain verifier reports it
        chunks.append(recs)
        if len(recs) < len(lines):  # this file reaches back to seq: older files not needed
            break
    out = [r for chunk in reversed(chunks) for r in chunk]
    return out[:limit]


class DeviceAgent:
    """Connects one unit to the broker; every method the door calls returns at once."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        door: Door,
        audit: Any,
        gallery_file: Any = None,
        gallery: Any = None,
        model: Any = None,
        on_gallery: Callable[[Any], None] | None = None,
        bundle: str = "",
    ) -> None:
        self.cfg = cfg
        self.door = door
        self.audit = audit  # None: a unit without an audit log (publishes no audit records)
        self.audit_path = Path(audit.path) if audit is not None else None
        self.gallery = gallery
        self.bundle = bundle
        self.on_gallery = on_gallery
        self.software = f"edgeface {__version__}"
        self.last_person: str = ""
        self.reports: list[dict[str, Any]] = []  # applied/refused, newest last (bounded)
        self.applier = None
        self.gate = None
        self.state_store = None
        if cfg.accepts_fleet:
            from edgeface.fleet.apply import ChangeApplier, CommandGate, StateStore
            from edgeface.fleet.envelope import load_public_key

            key = load_public_key(cfg.operator_public_key)  # type: ignore[arg-type]
            self.state_store = StateStore(cfg.state_dir)
            if gallery_file is not None:
                self.applier = ChangeApplier(
                    gallery_file,
                    operator_key=key,
                    fleet_key=cfg.fleet_key(),
                    state=self.state_store,
                    model=model,
                    on_gallery=self._gallery_changed,
                )
            self.gate = CommandGate(
                device_id=cfg.device_id,
                operator_key=key,
                state=self.state_store,
                remote_unlock=cfg.remote_unlock,
                remote_unlock_max_s=cfg.remote_unlock_max_s,
            )
        self._gallery_summary = self._summarize(gallery)
        subs = [(topics.HA_STATUS, 0)] if cfg.discovery else []
        if cfg.accepts_fleet:
            f = cfg.fleet_topic
            subs += [
                (topics.log_filter(f), 1),
                (topics.snapshot_topic(f), 1),
                (topics.command_topic(f, cfg.device_id), 1),
                (topics.command_topic(f, "all"), 1),
            ]
        self.link = MqttLink(
            cfg,
            will=(f"{cfg.prefix}/availability", b"offline"),
            subscriptions=subs,
            on_message=self._incoming,
            on_connect=self._on_connect,
        )
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue(maxsize=10_000)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected_gen = 0
        self._seen_gen = 0
        self._audit_sent = self._acked = self._load_acked()
        self._acks_above: set[int] = set()
        self._ack_mutex = threading.Lock()
        self._last_state: dict[str, Any] = {}
        self._last_state_t = 0.0
        self._worker = threading.Thread(target=self._run, name="fleet-agent", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.state_store is not None and self.state_store.state.lockdown:
            self.door.submit(DoorCommand("lockdown_on", "fleet state (lockdown before restart)"))
        self._worker.start()
        self.link.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        from edgeface.fleet.link import Outgoing

        final = [
            Outgoing(f"{self.cfg.prefix}/state", json.dumps(self.state()).encode(), 1, True),
            self._outgoing_availability("offline"),
        ]
        self.link.close(final=final)
        self._worker.join(5.0)

    def _outgoing_availability(self, value: str) -> Any:
        from edgeface.fleet.link import Outgoing

        return Outgoing(f"{self.cfg.prefix}/availability", value.encode(), 1, True)

    # --- from the door (its thread: never block) ----------------------------------------------

    def record_written(self, record: dict[str, Any]) -> None:
        kind = EVENTS.get(str(record.get("event")))
        if kind is not None:
            event = self._event(record, *kind)
            self.link.publish(f"{self.cfg.prefix}/event", json.dumps(event), qos=1)
            if kind[0] == "access_granted":
                self.last_person = event.get("name") or event.get("identity_id") or ""
        self._wake.set()

    def _event(self, record: dict[str, Any], event_type: str, reason: str) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "event_type": event_type,
            "device": self.cfg.device_id,
            "time": record.get("iso"),
            "audit_seq": record.get("seq"),
        }
        if reason:
            ev["reason"] = record.get("reason") or reason
        for k in EVENT_FIELDS:
            if record.get(k) is not None:
                ev[k] = record[k]
        iid = record.get("identity_id")
        if iid and self.cfg.display_names and self.gallery is not None:
            with contextlib.suppress(Exception):
                ev["name"] = self.gallery.info(iid).name
        return ev

    # --- from the broker (paho's thread: hand over and return) -------------------------------

    def _incoming(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self.inbox.put_nowait((topic, payload, retained))
        except queue.Full:
            log.warning("fleet: inbox full, dropping a message on %s", topic)
        self._wake.set()

    def _on_connect(self) -> None:
        self._connected_gen += 1
        self._wake.set()

    # --- the agent's own thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._seen_gen != self._connected_gen:
                self._seen_gen = self._connected_gen
                self._announce()
            while True:
                try:
                    topic, payload, retained = self.inbox.get_nowait()
                except queue.Empty:
                    break
                try:
                    self._handle(topic, payload, retained)
                except Exception as exc:
                    log.warning("fleet: message on %s failed: %s", topic, exc)
            try:
                self._pump_audit()
                self._maybe_state()
            except Exception as exc:  # keep the agent alive; the door never depends on it
                log.warning("fleet: %s", exc)

    def _announce(self) -> None:
        self.link.publish(f"{self.cfg.prefix}/availability", "online", qos=1, retain=True)
        if self.cfg.discovery:
            self._publish_discovery()
        with self._ack_mutex:
            self._acks_above.clear()
            self._audit_sent = self._acked  # resend what the broker did not acknowledge
        self._publish_state()

    def _publish_discovery(self) -> None:
        for topic, payload in discovery_messages(self.cfg, self.software):
            self.link.publish(topic, payload, qos=1, retain=True)

    def _handle(self, topic: str, payload: bytes, retained: bool) -> None:
        f = self.cfg.fleet_topic
        if topic == topics.HA_STATUS:
            if payload.strip() == b"online" and self.cfg.discovery:
                self._publish_discovery()
                self._publish_state()
            return
        if not payload:  # a retained message being cleared (log compaction)
            return
        if topic.startswith(f"{f}/command/"):
            self._command(payload)
        elif self.applier is not None and (
            topic == topics.snapshot_topic(f) or topic.startswith(f"{f}/log/")
        ):
            for outcome in self.applier.offer(payload, retained=retained):
                if outcome.status == "duplicate":
                    continue
                self._report("change", outcome.to_dict())
            self._publish_state()

    def _command(self, payload: bytes) -> None:
        assert self.gate is not None
        try:
            cmd = self.gate.check(payload)
        except RefusedMessage as exc:
            if exc.reason == "wrong_target":
                return
            self._report(
                "command", {"status": "refused", "reason": exc.reason, "detail": exc.detail}
            )
            return
        if isinstance(cmd, ResendAudit):
            with self._ack_mutex:
                mark = max(-1, cmd.from_seq - 1)
                self._acked = min(self._acked, mark)
                self._audit_sent = min(self._audit_sent, mark)
                self._acks_above.clear()
        else:
            self.door.submit(cmd)
        self._report("command", {"status": "accepted", "command": cmd.kind, "origin": cmd.origin})

    def _report(self, what: str, body: dict[str, Any]) -> None:
        """Audit and publish what happened to a fleet message."""
        # "seq" is the message's sequence number: it must not clash with the audit record's
        rec = {"what": what, **{("fleet_seq" if k == "seq" else k): v for k, v in body.items()}}
        self.reports = [*self.reports[-199:], rec]
        status = body.get("status")
        event = "fleet_applied" if status in ("applied", "accepted") else "fleet_refused"
        if status == "pending":
            event = "fleet_held"
        try:
            if self.audit is not None:
                self.audit.append(event, **{k: v for k, v in rec.items() if k != "status"})
        except Exception as exc:
            log.error("fleet: cannot audit %s: %s", event, exc)
        self.link.publish(f"{self.cfg.prefix}/fleet", json.dumps(rec), qos=1)
        if status == "refused":
            log.warning("fleet: refused %s: %s %s", what, body.get("reason"), body.get("detail"))

    def _gallery_changed(self, gallery: Any) -> None:
        self.gallery = gallery
        self._gallery_summary = self._summarize(gallery)
        if self.on_gallery is not None:
            self.on_gallery(gallery)

    @staticmethod
    def _summarize(gallery: Any) -> dict[str, Any]:
        if gallery is None:
            return {}
        from edgeface.fleet.apply import content_hash

        return {
            "generation": gallery.generation,
            "hash": content_hash(gallery)[:16],
            "identities": len(gallery),
        }

    # --- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        # Stamped before the door is read, so every audit record older than "time" is counted
        # in "audit" (the collector's truncation check relies on it); floored, never rounded up.
        stamp = math.floor(time.time() * 1000) / 1000
        door = self.door.status()
        st: dict[str, Any] = {
            "device": self.cfg.device_id,
            "time": stamp,
            "software": self.software,
            "bundle": self.bundle,
            "gallery": self._gallery_summary,
            "last_person": self.last_person,
            "mqtt_dropped": self.link.dropped,
            **{k: door.get(k) for k in (*STATE_KEYS, "uptime_s")},
            "audit": {"seq": door.get("audit_seq"), "head": door.get("audit_head")},
        }
        if self.state_store is not None:
            s = self.state_store.state
            st["fleet"] = {"applied_seq": s.applied_seq, "command_seq": s.command_seq}
        return st

    def _publish_state(self) -> None:
        st = self.state()
        self._last_state = {k: st.get(k) for k in (*STATE_KEYS, "gallery", "last_person")}
        self._last_state_t = time.monotonic()
        self.link.publish(f"{self.cfg.prefix}/state", json.dumps(st), qos=1, retain=True)

    def _maybe_state(self) -> None:
        door = self.door.status()
        now_keys = {k: door.get(k) for k in STATE_KEYS}
        changed = any(self._last_state.get(k) != v for k, v in now_keys.items())
        changed |= self._last_state.get("last_person") != self.last_person
        if changed or time.monotonic() - self._last_state_t >= self.cfg.state_interval_s:
            self._publish_state()

    # --- audit --------------------------------------------------------------------------------

    def _load_acked(self) -> int:
        return self.state_store.state.audit_acked_seq if self.state_store is not None else -1

    def _pump_audit(self) -> None:
        if self.audit_path is None or not self.link.connected.is_set():
            return
        # leave room in the bounded queue: a record dropped there would only be resent
        # after the next reconnect
        room = self.cfg.queue_size // 2 - len(self.link.queue)
        head = int(self.door.status().get("audit_seq", -1))
        if head < self._acked:
            self._log_was_cut(head)
        if head <= self._audit_sent or room <= 0:
            return
        recs = records_after(self.audit_path, self._audit_sent, limit=room)
        if recs and self._audit_sent == self._acked:
            with self._ack_mutex:
                # records before the oldest kept file were pruned by rotation: not sendable
                self._acked = max(self._acked, int(recs[0]["seq"]) - 1)
        for rec in recs:
            seq = int(rec["seq"])
            payload = json.dumps(rec, sort_keys=True, separators=(",", ":"))
            self.link.publish(
                topics.audit_topic(self.cfg.prefix), payload, qos=1, on_ack=self._acker(seq)
            )
            self._audit_sent = seq

    def _log_was_cut(self, head: int) -> None:
        """The door's log ends below what the broker acknowledged: records were cut from its
        tail (the door writes ``audit_tamper_detected`` and carries on from the cut). Send the
        log again from its first kept record, so the records written since the cut, that
        warning first, reach the collector, which reports them as diverging from its copy;
        kept records before the cut arrive as duplicates and are ignored there."""
        log.warning(
            "fleet: the audit log ends at seq %d but seq %d was acknowledged: sending it again",
            head,
            self._acked,
        )
        with self._ack_mutex:
            self._acks_above.clear()
            self._acked = self._audit_sent = -1
            if self.state_store is not None:
                self.state_store.update(audit_acked_seq=-1)

    def _acker(self, seq: int) -> Callable[[], None]:
        """Advance the acknowledged mark only over an unbroken run of acknowledged records,
        so a record lost on the way is sent again after the next connect."""

        def ack() -> None:
            with self._ack_mutex:
                if seq <= self._acked:
                    return
                self._acks_above.add(seq)
                start = self._acked
                while self._acked + 1 in self._acks_above:
                    self._acked += 1
                    self._acks_above.discard(self._acked)
                if self._acked != start and self.state_store is not None:
                    self.state_store.update(audit_acked_seq=self._acked)

        return ack
