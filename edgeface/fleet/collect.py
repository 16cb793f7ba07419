"""``edgeface fleet collect``: every door's audit records, stored per device, chain checked.

Each door publishes every audit record it writes on ``edgeface/<device>/audit`` (QoS 1) and its
audit head (seq, hash) in its retained ``state``. The collector appends records to
``<out>/<device>/audit.jsonl`` in the door's own format (so ``edgeface audit verify`` checks
the copy), and checks continuity as they come:

* a record that repeats a collected seq with the same hash is a duplicate (a door resends what
  the broker did not acknowledge): ignored;
* a record whose ``seq`` was collected with a *different* hash, or whose ``prev`` is not the
  collected record before it, means the door's log was cut and rewritten from there:
  ``diverged`` (the collected copy is kept unchanged; the local chain alone cannot show this);
* a door whose state, published *after* the newest collected record was written, reports an
  audit head below it lost records at its tail: ``truncated`` (an older retained state is only
  stale);
* a gap (a later record before an earlier one) is held until filled; ``edgeface fleet
  collect`` then asks the door (a signed ``audit_resend`` command) to publish its log again
  from the first missing record, because a broker that crashes after acknowledging a record
  can lose it; a gap that stays is reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.door.audit import GENESIS, encode_record, record_hash
from edgeface.fleet.config import DEVICE_ID


@dataclass
class DeviceLog:
    path: Path
    last_seq: int = -1
    head: str = GENESIS
    hashes: dict[int, str] = field(default_factory=dict)
    times: dict[int, float] = field(default_factory=dict)
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: the device's own audit head, from its latest state
    device_head: int = -1
    added: int = 0
    duplicates: int = 0


class AuditCollector:
    """Pure bookkeeping (no MQTT): ``offer`` records, ``observe_state`` heads, ``report``."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.devices: dict[str, DeviceLog] = {}

    def _log(self, device: str) -> DeviceLog:
        if device not in self.devices:
            path = self.out / device / "audit.jsonl"
            log = DeviceLog(path)
            if path.exists():
                for line in path.read_bytes().splitlines():
                    rec = json.loads(line)
                    log.hashes[int(rec["seq"])] = str(rec["hash"])
                    log.times[int(rec["seq"])] = float(rec.get("time", 0.0))
                    log.last_seq, log.head = int(rec["seq"]), str(rec["hash"])
            self.devices[device] = log
        return self.devices[device]

    def offer(self, device: str, record: dict[str, Any]) -> str:
        """Store one record; returns ``added``, ``duplicate``, ``held``, ``diverged`` or ``bad``."""
        if not DEVICE_ID.match(device):
            return "bad"
        log = self._log(device)
        try:
            seq, own, prev = int(record["seq"]), str(record["hash"]), str(record["prev"])
        except (KeyError, TypeError, ValueError):
            log.problems.append("bad: a published record is not an audit record")
            return "bad"
        if record_hash(record) != own:
            log.problems.append(f"bad: seq {seq} does not match its own hash (modified)")
            return "bad"
        if seq in log.hashes:
            if log.hashes[seq] == own:
                log.duplicates += 1
                return "duplicate"
            log.problems.append(
                f"diverged: seq {seq} differs from the collected record: the device's log was "
                f"cut at or before seq {seq} and rewritten (collected up to {log.last_seq})"
            )
            return "diverged"
        if log.last_seq >= 0 and seq <= log.last_seq:
            log.problems.append(f"diverged: seq {seq} arrived after seq {log.last_seq}")
            return "diverged"
        if seq != log.last_seq + 1 and not (log.last_seq < 0 and not log.hashes):
            log.pending[seq] = record
            return "held"
        if log.last_seq >= 0 and prev != log.head:
            log.problems.append(
                f"diverged: seq {seq} does not link to collected seq {log.last_seq} "
                "(records were removed from the device's tail and the chain continued)"
            )
            return "diverged"
        self._append(log, record)
        while log.last_seq + 1 in log.pending:
            nxt = log.pending.pop(log.last_seq + 1)
            if str(nxt["prev"]) != log.head:
                log.problems.append(f"diverged: seq {nxt['seq']} does not link to its predecessor")
                break
            self._append(log, nxt)
        return "added"

    def _append(self, log: DeviceLog, record: dict[str, Any]) -> None:
        log.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, encode_record(record) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        seq = int(record["seq"])
        log.hashes[seq] = str(record["hash"])
        log.times[seq] = float(record.get("time", 0.0))
        log.last_seq, log.head = seq, str(record["hash"])
        log.added += 1

    def observe_state(self, device: str, state: dict[str, Any]) -> None:
        """Compare the device's own audit head with what was collected."""
        if not DEVICE_ID.match(device):
            return
        audit = state.get("audit") or {}
        seq, head = audit.get("seq"), audit.get("head")
        if not isinstance(seq, int):
            return
        log = self._log(device)
        log.device_head = max(log.device_head, seq)
        published = state.get("time")
        newest = log.times.get(log.last_seq)
        # a retained state older than the newest collected record is just stale
        if (
            seq < log.last_seq
            and isinstance(published, (int, float))
            and newest is not None
            and (published > newest)
        ):
            msg = (
                f"truncated: the device's audit log ends at seq {seq}, but seq {log.last_seq} "
                f"was collected: records {seq + 1}..{log.last_seq} were removed on the device"
            )
            # the head keeps growing as the door writes on from the cut: the first report
            # says best where the cut was
            if not any(p.startswith("truncated:") for p in log.problems):
                log.problems.append(msg)
        elif seq in log.hashes and head and log.hashes[seq] != head:
            log.problems.append(
                f"diverged: the device's head at seq {seq} is not the collected one"
            )

    def missing(self) -> dict[str, int]:
        """Devices with records that never arrived (a gap, or a head beyond what was
        collected), and the first seq to ask them for again."""
        out = {}
        for device, log in self.devices.items():
            if log.pending or log.device_head > log.last_seq:
                out[device] = log.last_seq + 1
        return out

    def report(self) -> dict[str, Any]:
        from edgeface.door.audit import verify_files

        out: dict[str, Any] = {}
        for device, log in sorted(self.devices.items()):
            problems = list(log.problems)
            if log.pending:
                problems.append(
                    f"gap: seq {log.last_seq + 1} never arrived "
                    f"(holding {len(log.pending)} later records)"
                )
            rep = verify_files([log.path]) if log.path.exists() else None
            if rep is not None and not rep.ok:
                problems.extend(rep.errors)
            out[device] = {
                "file": str(log.path),
                "records": rep.records if rep else 0,
                "last_seq": log.last_seq,
                "head": log.head,
                "added": log.added,
                "duplicates": log.duplicates,
                "ok": not problems,
                "problems": problems,
            }
        return out
