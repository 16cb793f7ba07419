"""The door's small outward interface: records out (an event sink), commands in.

The daemon knows nothing about MQTT or any other transport. Something outside it (the fleet
agent in :mod:`edgeface.fleet.agent`, a test) plugs in through two things only:

* :class:`TeeAudit` wraps the daemon's :class:`~edgeface.door.audit.AuditLog`: every record,
  once it is written and fsynced, is handed to each :class:`RecordSink`. A sink must return at
  once (put the record on a bounded queue and let its own thread do the rest), because it runs
  on the thread that decides about the door.
* :class:`DoorCommand` objects given to ``DoorDaemon.submit``: relock now, lockdown on/off and
  (only where the configuration enables it) a short remote unlock. The daemon audits and
  applies them on its own loop; ``submit`` never blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

log = logging.getLogger("edgeface.door")

CommandKind = Literal["relock", "lockdown_on", "lockdown_off", "unlock"]
COMMAND_KINDS: tuple[str, ...] = ("relock", "lockdown_on", "lockdown_off", "unlock")


@dataclass(frozen=True)
class DoorCommand:
    """One verified instruction for the door (the transport checked signature and expiry).

    ``origin`` says where it came from for the audit record (e.g. ``fleet seq 12``);
    ``duration_s`` is only used by ``unlock`` and is capped by ``policy.unlock_s``.
    """

    kind: CommandKind
    origin: str
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in COMMAND_KINDS:
            raise ValueError(f"unknown door command {self.kind!r}")


class RecordSink(Protocol):
    """Receives each audit record right after it was written. Must never block."""

    def record_written(self, record: dict[str, Any]) -> None: ...


class TeeAudit:
    """An :class:`AuditLog` that also tells sinks about every record it wrote.

    Everything else (``seq``, ``head``, ``path``, ``close``...) is the wrapped log's. A sink that
    raises is logged and ignored: publishing must never stop the door from auditing.
    """

    def __init__(self, inner: Any, sinks: list[RecordSink] | None = None) -> None:
        self.inner = inner
        self.sinks: list[RecordSink] = list(sinks or [])

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = self.inner.append(event, **fields)
        for sink in self.sinks:
            try:
                sink.record_written(record)
            except Exception as exc:  # a broken sink must not break the audit path
                log.warning("record sink %s failed: %s", type(sink).__name__, exc)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
