"""A device's side of the fleet protocol, without MQTT: ordered, idempotent gallery changes and
verified commands.

Why no MQTT here: the same code runs in the door's agent, in tests that feed it payloads
directly, and in ``bench/bench_fleet.py``'s fifty simulated doors.

Rules for gallery changes (``kind`` = ``change`` or ``snapshot``):

* only payloads signed by the operator key are looked at (:func:`envelope.open_envelope`);
* the embedder named in the change must be the device's, else ``embedder_mismatch``;
* a change is applied only when its ``seq`` is the next one (``applied + 1``). A later one is
  held (``out_of_order``, reported, not applied) until the gap is filled; an older one is a
  ``duplicate`` when it came from the broker's retained log (a door that reconnects sees the
  whole retained log again) and ``replayed`` (refused and reported) otherwise;
* a snapshot with ``seq > applied`` replaces the gallery's content and moves ``applied`` to its
  ``seq`` (how a new door, or one that missed compacted changes, catches up);
* each change is one writer transaction on the encrypted gallery (lock, re-read, modify, atomic
  replace). ``applied`` is persisted after the gallery, and every operation is idempotent
  (upsert replaces the identity, remove of an absent id is a no-op), so a crash between the
  two only repeats a change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeface.door.port import DoorCommand
from edgeface.fleet import envelope
from edgeface.fleet.errors import RefusedMessage
from edgeface.gallery.errors import IdentityNotFoundError
from edgeface.gallery.store import Gallery, GalleryFile, ModelRef, Template
from edgeface.storage import atomic_write

log = logging.getLogger("edgeface.fleet")

#: most changes held while waiting for a missing one
MAX_PENDING = 10_000
#: a signed command is honoured at most this long after it was issued
MAX_COMMAND_LIFETIME_S = 600.0
#: and a remote unlock at most this long
MAX_UNLOCK_LIFETIME_S = 60.0
CLOCK_SKEW_S = 30.0


@dataclass
class FleetState:
    """What a device remembers between restarts (``fleet-state.json`` in ``state_dir``)."""

    applied_seq: int = 0
    command_seq: int = 0
    lockdown: bool = False
    #: highest audit seq the broker acknowledged (the agent republishes what follows)
    audit_acked_seq: int = -1


class StateStore:
    """``fleet-state.json``, replaced atomically; thread-safe."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "fleet-state.json"
        self._mutex = threading.Lock()
        self.state = self._read()

    def _read(self) -> FleetState:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return FleetState(**{k: raw[k] for k in asdict(FleetState()) if k in raw})
        except FileNotFoundError:
            return FleetState()
        except (OSError, ValueError, TypeError) as exc:
            from edgeface.fleet.errors import FleetError

            raise FleetError(f"{self.path}: unreadable fleet state ({exc})") from exc

    def update(self, **changes: Any) -> FleetState:
        with self._mutex:
            for k, v in changes.items():
                setattr(self.state, k, v)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(asdict(self.state)).encode(), what="fleet state")
            return self.state


@dataclass(frozen=True)
class Outcome:
    """What happened to one message: ``applied``, ``duplicate``, ``pending`` or ``refused``."""

    status: str
    seq: int | None
    op: str = ""
    reason: str = ""
    detail: str = ""
    identities: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def content_hash(gallery: Gallery) -> str:
    """sha256 of who is enrolled and their templates (ids, names, embeddings, quality), not of
    when each door wrote them: equal on every door that applied the same changes."""
    h = hashlib.sha256()
    for info in sorted(gallery.identities(), key=lambda i: i.id):
        h.update(envelope.canonical([info.id, info.name]))
        for t in gallery.templates(info.id):
            h.update(np.ascontiguousarray(t.embedding, dtype="<f4").tobytes())
            h.update(np.float32(t.quality).tobytes())
    return h.hexdigest()


def model_header(model: ModelRef) -> dict[str, str]:
    return {"id": model.id, "sha256": model.sha256}


class ChangeApplier:
    """Applies signed gallery changes to one device's encrypted gallery, in order."""

    def __init__(
        self,
        gallery_file: GalleryFile,
        *,
        operator_key: Ed25519PublicKey,
        fleet_key: bytes,
        state: StateStore,
        model: ModelRef | None = None,
        on_gallery: Callable[[Gallery], None] | None = None,
    ) -> None:
        self.gallery_file = gallery_file
        self.operator_key = operator_key
        self.fleet_key = fleet_key
        self.state = state
        self.model = model
        self.on_gallery = on_gallery
        self.pending: dict[int, envelope.Envelope] = {}
        self._mutex = threading.Lock()

    @property
    def applied_seq(self) -> int:
        return self.state.state.applied_seq

    def offer(self, payload: bytes, *, retained: bool = False) -> list[Outcome]:
        """Verify and apply (or hold, or refuse) one message; returns what happened, the
        message's own outcome first, then any held changes it unblocked."""
        with self._mutex:
            try:
                env = envelope.open_envelope(payload, self.operator_key)
                return self._offer(env, retained)
            except RefusedMessage as exc:
                seq = _peek_seq(payload)
                return [Outcome("refused", seq, reason=exc.reason, detail=exc.detail)]

    def _offer(self, env: envelope.Envelope, retained: bool) -> list[Outcome]:
        kind, seq = env.kind, env.seq
        op = str(env.header.get("op", kind))
        if kind not in ("change", "snapshot"):
            raise RefusedMessage("malformed", f"not a gallery change ({kind!r})")
        self._check_model(env.header.get("embedder"))
        if seq <= self.applied_seq:
            if retained:
                return [Outcome("duplicate", seq, op)]
            raise RefusedMessage("replayed", f"seq {seq} <= applied {self.applied_seq}")
        if kind == "snapshot" or seq == self.applied_seq + 1:
            out = [self._apply(env)]
        else:
            if len(self.pending) >= MAX_PENDING and seq not in self.pending:
                raise RefusedMessage("out_of_order", f"seq {seq}: too many held changes")
            self.pending[seq] = env
            return [
                Outcome(
                    "pending",
                    seq,
                    op,
                    reason="out_of_order",
                    detail=f"waiting for seq {self.applied_seq + 1}",
                )
            ]
        for old in [s for s in self.pending if s <= self.applied_seq]:
            del self.pending[old]
        while self.applied_seq + 1 in self.pending:
            out.append(self._apply(self.pending.pop(self.applied_seq + 1)))
        return out

    def _check_model(self, emb: Any) -> None:
        if not isinstance(emb, dict) or not {"id", "sha256"} <= emb.keys():
            raise RefusedMessage("malformed", "change names no embedder")
        theirs = ModelRef(str(emb["id"]), str(emb["sha256"]))
        mine = self.model
        if mine is not None and theirs != mine:
            raise RefusedMessage(
                "embedder_mismatch",
                f"change made with {theirs.describe()}, this device runs {mine.describe()}",
            )

    def _apply(self, env: envelope.Envelope) -> Outcome:
        header = env.header
        op = str(header.get("op", env.kind))
        model = ModelRef(str(header["embedder"]["id"]), str(header["embedder"]["sha256"]))
        plain = envelope.decrypt(self.fleet_key, env.body, header)
        if op == "remove":
            try:
                ids = [str(i) for i in json.loads(plain)["ids"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise RefusedMessage("malformed", f"remove body unreadable ({exc})") from exc
            people: list[envelope.IdentityRecord] = []
        elif op in ("upsert", "snapshot"):
            people = envelope.unpack_identities(plain)
            ids = [p.id for p in people]
        else:
            raise RefusedMessage("malformed", f"unknown operation {op!r}")
        try:
            with self.gallery_file.edit() as g:
                if op == "snapshot":
                    ids = [i.id for i in g.identities()]
                for iid in ids:
                    with contextlib.suppress(IdentityNotFoundError):
                        g.remove(iid)
                for p in people:
                    temps = [
                        Template(e, q, model, c)
                        for e, q, c in zip(p.embeddings, p.quality, p.created, strict=True)
                    ]
                    g.add_identity(p.name, temps, identity_id=p.id)
                g.dirty = True  # a repeated change still counts as applied
        except RefusedMessage:
            raise
        except Exception as exc:
            # the gallery file is unchanged (edit() writes nothing when the block raises)
            raise RefusedMessage("apply_failed", f"{type(exc).__name__}: {exc}") from exc
        self.state.update(applied_seq=env.seq)
        if self.on_gallery is not None:
            self.on_gallery(g)
        return Outcome("applied", env.seq, op, identities=len(people) or len(ids))


def _peek_seq(payload: bytes) -> int | None:
    try:
        seq = envelope.parse(payload)[0].get("seq")
    except RefusedMessage:
        return None
    return seq if isinstance(seq, int) else None


@dataclass(frozen=True)
class ResendAudit:
    """For the agent, not the door: publish the audit log again from ``from_seq`` (the
    collector asks when a record never reached it, e.g. a broker that crashed after
    acknowledging it)."""

    from_seq: int
    origin: str
    kind: str = "audit_resend"


class CommandGate:
    """Turns signed command messages into :class:`DoorCommand` s, or refuses them."""

    def __init__(
        self,
        *,
        device_id: str,
        operator_key: Ed25519PublicKey,
        state: StateStore,
        remote_unlock: bool = False,
        remote_unlock_max_s: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = device_id
        self.operator_key = operator_key
        self.state = state
        self.remote_unlock = remote_unlock
        self.remote_unlock_max_s = remote_unlock_max_s
        self.wall_clock = wall_clock
        self._mutex = threading.Lock()

    def check(self, payload: bytes) -> DoorCommand | ResendAudit:
        """A verified command (its seq is then consumed), or :class:`RefusedMessage`."""
        with self._mutex:
            env = envelope.open_envelope(payload, self.operator_key)
            h = env.header
            if env.kind != "command":
                raise RefusedMessage("malformed", f"not a command ({env.kind!r})")
            if h.get("target") not in (self.device_id, "*"):
                raise RefusedMessage("wrong_target", f"addressed to {h.get('target')!r}")
            if env.seq <= self.state.state.command_seq:
                raise RefusedMessage(
                    "replayed", f"command seq {env.seq} <= {self.state.state.command_seq}"
                )
            now = self.wall_clock()
            try:
                issued, expires = float(h["issued"]), float(h["expires"])
            except (KeyError, TypeError, ValueError) as exc:
                raise RefusedMessage("malformed", "command without issued/expires") from exc
            if expires <= now:
                raise RefusedMessage("expired", f"expired {now - expires:.0f} s ago")
            if issued > now + CLOCK_SKEW_S:
                raise RefusedMessage("malformed", "issued in the future (check the clocks)")
            cmd = str(h.get("command"))
            limit = MAX_UNLOCK_LIFETIME_S if cmd == "unlock" else MAX_COMMAND_LIFETIME_S
            if expires - issued > limit:
                raise RefusedMessage("malformed", f"lifetime over {limit:.0f} s")
            origin = f"fleet command seq {env.seq}"
            if cmd == "relock":
                out = DoorCommand("relock", origin)
            elif cmd == "lockdown" and h.get("value") in ("on", "off"):
                out = DoorCommand("lockdown_on" if h["value"] == "on" else "lockdown_off", origin)
            elif cmd == "audit_resend":
                try:
                    out = ResendAudit(int(h["value"]), origin)
                except (KeyError, TypeError, ValueError) as exc:
                    raise RefusedMessage("malformed", "audit_resend needs a seq") from exc
            elif cmd == "unlock":
                if h.get("target") != self.device_id:
                    raise RefusedMessage("malformed", "a remote unlock must name one door")
                if not self.remote_unlock:
                    raise RefusedMessage("remote_unlock_disabled", "mqtt.remote_unlock is false")
                dur = float(h.get("duration_s", self.remote_unlock_max_s))
                out = DoorCommand("unlock", origin, min(max(dur, 0.0), self.remote_unlock_max_s))
            else:
                raise RefusedMessage("malformed", f"unknown command {cmd!r}")
            changes: dict[str, Any] = {"command_seq": env.seq}
            if isinstance(out, DoorCommand) and out.kind in ("lockdown_on", "lockdown_off"):
                changes["lockdown"] = out.kind == "lockdown_on"
            self.state.update(**changes)
            return out
