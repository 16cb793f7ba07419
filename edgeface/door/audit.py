"""Append-only, hash-chained audit log (JSON lines) with rotation that keeps the chain.

Each record is one JSON object on one line with sorted keys. ``hash`` is the sha256 (hex) of
the record's canonical JSON without the ``hash`` field, and ``prev`` is the previous record's
``hash`` (64 zeros for the first record ever). Editing any line (the last one included) breaks
its own hash; removing or reordering lines breaks ``prev`` and ``seq`` (consecutive across
files), and the report names the line. Rotation renames ``door.jsonl`` to
``door.jsonl.N`` (N grows; 1 is the oldest kept) and the new file's first record links to the
old file's last one, so verifying the files in order checks one unbroken chain.

What a hash chain cannot show on its own: that the *newest* records were cut off (truncation
at the end) or the oldest pruned file removed. The daemon therefore logs ``seq`` and the
head hash to the journal at start, stop and every rotation, and ``verify`` reports the head so
it can be compared with that anchor.

Durability: every record is written with one ``write`` on an ``O_APPEND`` descriptor and
``fsync``-ed before ``append`` returns (records are per decision, not per frame: a few per
minute, so the fsync is affordable even on an SD card). No images are ever logged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.errors import StorageError

GENESIS = "0" * 64


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical encoding of ``record`` without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(encode_record(body)).hexdigest()


def _clean(value: Any) -> Any:
    """JSON has no NaN: a missing score is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return round(value, 6)
    return value


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: _clean(v) for k, v in record.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode("ascii")


def rotated_files(path: Path) -> list[Path]:
    """``path.N`` files, oldest first (by N)."""
    pat = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pat.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """The last complete line of ``path`` and whether a partial line follows it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, False
    if size == 0:
        return None, False
    with open(path, "rb") as f:
        block = 4096
        pos = size
        buf = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            if buf.count(b"\n") >= 2 or pos == 0:
                break
    torn = not buf.endswith(b"\n")
    lines = buf.split(b"\n")
    complete = lines[:-1]  # the element after the last newline is partial (or empty)
    return (complete[-1] if complete and complete[-1] else None), torn


class AuditLog:
    """The writer. One instance per process; ``append`` is thread-safe."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 10_000_000,
        keep: int = 50,
        wall_clock: Callable[[], float] = time.time,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.wall_clock = wall_clock
        self.fsync = fsync
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self.head = GENESIS
        self.seq = -1
        self._open()

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{self.path.parent}: cannot create audit directory ({exc.strerror})"
            ) from exc
        last, torn = _last_line(self.path)
        if torn:
            # A crash in the middle of a write left a partial line. Never edit an audit file:
            # set it aside as a rotated file and continue the chain from its last full record.
            self._rotate_file()
        if last is None:
            olds = rotated_files(self.path)
            last = _last_line(olds[-1])[0] if olds else None
        if last is not None:
            try:
                rec = json.loads(last)
                self.seq, self.head = int(rec["seq"]), str(rec["hash"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"{self.path}: last record is not an audit record; run `edgeface audit verify`"
                ) from exc
        try:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot open audit log ({exc.strerror})") from exc

    def _rotate_file(self) -> None:
        olds = rotated_files(self.path)
        n = int(olds[-1].name.rsplit(".", 1)[1]) + 1 if olds else 1
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{n}"))
        for old in rotated_files(self.path)[: -self.keep] if self.keep else []:
            old.unlink(missing_ok=True)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and return it (with ``seq``, ``time``, ``prev``)."""
        with self._mutex:
            if self._fd is None:
                raise StorageError(f"{self.path}: audit log is closed")
            if os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
            now = self.wall_clock()
            record = {
                "seq": self.seq + 1,
                "time": now,
                "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "event": event,
                "prev": self.head,
                **fields,
            }
            record = {k: _clean(v) for k, v in record.items()}
            record["hash"] = record_hash(record)
            line = encode_record(record)
            try:
                os.write(self._fd, line + b"\n")
                if self.fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(
                    f"{self.path}: cannot write audit record ({exc.strerror})"
                ) from exc
            self.seq += 1
            self.head = record["hash"]
            return record

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._rotate_file()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# --- verification ----------------------------------------------------------------------------


@dataclass
class VerifyReport:
    files: list[Path]
    records: int = 0
    head: str = GENESIS
    last_seq: int = -1
    first_seq: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    data = path.read_bytes()
    parts = data.split(b"\n")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and part == b"":
            return
        yield i + 1, part, last  # last=True: no newline after it (a torn write)


def verify_files(files: Iterable[str | Path]) -> VerifyReport:
    """Check the chain across ``files`` (oldest first). Stops at the first break."""
    paths = [Path(f) for f in files]
    report = VerifyReport(files=paths)
    prev_hash: str | None = None
    prev_seq: int | None = None
    for path in paths:
        try:
            lines = list(_lines(path))
        except OSError as exc:
            report.errors.append(f"{path}: cannot read ({exc.strerror or exc})")
            return report
        for lineno, line, torn in lines:
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
                seq, prev, own = int(rec["seq"]), str(rec["prev"]), str(rec["hash"])
            except (ValueError, KeyError, TypeError, AttributeError):
                if torn:
                    report.warnings.append(f"{where}: incomplete last line (crash during a write?)")
                    continue
                report.errors.append(f"{where}: not an audit record")
                return report
            if record_hash(rec) != own:
                report.errors.append(f"{where}: seq {seq} was modified (its hash does not match)")
                return report
            if prev_hash is None:
                if prev != GENESIS:
                    report.warnings.append(
                        f"{where}: chain starts at seq {seq}, linked to an earlier file that "
                        "was not given (pruned by rotation, or pass the older files too)"
                    )
                report.first_seq = seq
            elif prev != prev_hash:
                report.errors.append(
                    f"{where}: seq {seq} does not link to the record before it "
                    "(a line was edited, removed or reordered)"
                )
                return report
            if prev_seq is not None and seq != prev_seq + 1:
                report.errors.append(
                    f"{where}: seq {seq} follows seq {prev_seq} (a record is missing or moved)"
                )
                return report
            if torn:
                report.warnings.append(f"{where}: last line has no newline (crash during a write?)")
            prev_hash, prev_seq = own, seq
            report.records += 1
    if prev_hash is not None and prev_seq is not None:
        report.head, report.last_seq = prev_hash, prev_seq
    return report


def chain_files(path: str | Path) -> list[Path]:
    """The files to verify for the log at ``path``: its rotated predecessors, then itself."""
    p = Path(path)
    files = rotated_files(p)
    if p.exists():
        files.append(p)
    return files
