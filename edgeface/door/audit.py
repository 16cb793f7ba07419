"""Append-only, hash-chained audit log (JSON lines) with rotation that keeps the chain.

Each record is one JSON object on one line with sorted keys. ``hash`` is the sha256 (hex) of
the record's canonical JSON without the ``hash`` field, and ``prev`` is the previous record's
``hash`` (64 zeros for the first record ever). Editing any line (the last one included) breaks
its own hash; removing or reordering lines breaks ``prev`` and ``seq`` (consecutive across
files), and the report names the line. Rotation renames ``door.jsonl`` to
``door.jsonl.N`` (N grows; 1 is the oldest kept) and the new file's first record links to the
old file's last one, so verifying the files in order checks one unbroken chain.

A hash chain alone proves little against someone who can write the file: they recompute the
hashes after an edit, cut the newest records, or delete the first line. Three additions close
those gaps (see docs/door.md for what they still cannot stop):

* **MAC**: with a key (a systemd credential, or a key file), every record also carries
  ``mac`` = HMAC-SHA256(key, ``hash``). A forged or edited record needs the key.
* **Head file** (``<log>.head`` unless configured): the newest ``seq`` and ``hash`` and the
  oldest retained record (``first_seq``, ``first_hash``), rewritten atomically after every
  record and MAC'd. A cut tail, an emptied log and a deleted first line no longer match it.
* **Self-report**: when the writer opens a log that does not match its head, it appends an
  ``audit_tamper_detected`` record (MAC'd), and ``verify`` fails on any such record, so the
  evidence survives the head being rewritten by the next append.

The daemon also logs ``seq`` and the head hash to the journal at start and stop.

Durability: every record is written with one ``write`` on an ``O_APPEND`` descriptor and
``fsync``-ed before ``append`` returns (records are per decision, not per frame: a few per
minute, so the fsync is affordable even on an SD card). No images are ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
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
#: the event the writer appends when the log on disk does not match its head file
TAMPER_EVENT = "audit_tamper_detected"
#: name of the systemd credential holding the audit key (LoadCredentialEncrypted=)
AUDIT_CREDENTIAL = "edgeface-audit.key"


def load_audit_key(
    *, key_file: str | os.PathLike[str] | None = None, credential: str | None = None
) -> bytes | None:
    """The HMAC key: a systemd credential or a 0600 key file (same format as gallery keys:
    ``edgeface audit create-key FILE``); None when neither is configured."""
    if key_file is None and credential is None:
        return None
    from edgeface.gallery import keys

    if credential is not None:
        return keys.load_systemd_credential(credential).key
    assert key_file is not None
    return keys.load_key_file(key_file).key


def record_mac(key: bytes, record_hash_hex: str) -> str:
    return hmac.new(key, record_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()


def default_head_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".head")


@dataclass(frozen=True)
class Head:
    """The newest record and the oldest retained one, as the writer last left them."""

    seq: int
    hash: str
    first_seq: int
    first_hash: str
    mac: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "first_seq": self.first_seq,
            "first_hash": self.first_hash,
        }

    def signed(self, key: bytes | None) -> Head:
        if key is None:
            return self
        mac = hmac.new(key, encode_record(self.body()), hashlib.sha256).hexdigest()
        return Head(self.seq, self.hash, self.first_seq, self.first_hash, mac)

    def mac_ok(self, key: bytes) -> bool:
        return self.mac is not None and hmac.compare_digest(self.signed(key).mac or "", self.mac)

    def encode(self) -> bytes:
        body = self.body()
        if self.mac is not None:
            body["mac"] = self.mac
        return encode_record(body) + b"\n"


def read_head(path: Path) -> Head | None:
    """The head file, None when it does not exist; StorageError when it is unreadable."""
    try:
        raw = json.loads(path.read_bytes())
        return Head(
            int(raw["seq"]),
            str(raw["hash"]),
            int(raw["first_seq"]),
            str(raw["first_hash"]),
            None if raw.get("mac") is None else str(raw["mac"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: not an audit head file ({exc})") from exc


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical encoding of ``record`` without its ``hash`` and ``mac``."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
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


def head_problems(
    head: Head,
    key: bytes | None,
    last_seq: int,
    last_hash: str,
    first_seq: int,
    first_hash: str | None,
    *,
    lag_ok: bool,
) -> list[str]:
    """How the log on disk (its newest and oldest record) disagrees with the head file.

    ``lag_ok``: one record past the head is a crash between writing the record and the head,
    not tampering (its MAC, when there is a key, is checked with the record).
    """
    out = []
    if key is not None and not head.mac_ok(key):
        out.append("head file: MAC does not match (forged, or written with another key)")
    if last_seq < head.seq:
        if last_seq < 0:
            out.append(f"log is empty, but the head says it held records up to seq {head.seq}")
        else:
            out.append(
                f"records after seq {last_seq} were cut off (the head says the log ends at "
                f"seq {head.seq})"
            )
    elif last_seq == head.seq and last_hash != head.hash:
        out.append(f"seq {last_seq} is not the record the head file recorded (replaced)")
    elif last_seq > head.seq + (1 if lag_ok else 0):
        out.append(
            f"records seq {head.seq + 1}..{last_seq} were added after the head without the "
            "writer (or the head file was rolled back)"
        )
    if last_seq >= 0 and first_seq != head.first_seq:
        if first_seq > head.first_seq:
            out.append(
                f"records seq {head.first_seq}..{first_seq - 1} at the start were deleted "
                f"(the head pins the oldest retained record at seq {head.first_seq})"
            )
        else:
            out.append(f"the log starts at seq {first_seq}, before the head's {head.first_seq}")
    elif last_seq >= 0 and first_hash is not None and first_hash != head.first_hash:
        out.append(f"the first record (seq {first_seq}) was replaced")
    return out


def _first_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            line = f.readline()
        rec = json.loads(line)
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


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
        key: bytes | None = None,
        head_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.key = key
        self.head_path = Path(head_path) if head_path else default_head_path(self.path)
        self.first_seq = 0
        self.first_hash: str | None = None
        #: problems found when opening (the log does not match its head); also audited
        self.tamper: list[str] = []
        self.max_bytes = max_bytes
        self.keep = keep
        self.wall_clock = wall_clock
        self.fsync = fsync
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self.head = GENESIS
        self.seq = -1
        self._open()
        self._check_head()

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
        self._find_first()

    def _find_first(self) -> None:
        """The oldest record still on disk (what the head pins as ``first``)."""
        for f in chain_files(self.path):
            rec = _first_record(f)
            if rec is not None and "seq" in rec and "hash" in rec:
                self.first_seq, self.first_hash = int(rec["seq"]), str(rec["hash"])
                return
        self.first_seq, self.first_hash = self.seq + 1, None

    def _check_head(self) -> None:
        """Compare the log with its head file; a mismatch is appended as a tamper record."""
        try:
            head = read_head(self.head_path)
        except StorageError as exc:
            self.tamper.append(str(exc))
            head = None
        if head is None:
            if self.seq >= 0 and not self.tamper:
                self.tamper.append(
                    f"{self.head_path}: head file missing while the log holds records up to "
                    f"seq {self.seq} (deleted, or a log from before head files)"
                )
        else:
            self.tamper.extend(head_problems(head, self.key, self.seq, self.head, self.first_seq,
                                             self.first_hash, lag_ok=True))  # fmt: skip
        for problem in self.tamper:
            self.append(TAMPER_EVENT, reason=problem[:300])
        if head is None and self.seq < 0:
            return  # a new log: the head is written with the first record

    def _write_head(self) -> None:
        if self.first_hash is None:
            return
        from edgeface.storage import atomic_write

        head = Head(self.seq, self.head, self.first_seq, self.first_hash).signed(self.key)
        atomic_write(self.head_path, head.encode(), what="audit head")

    def _rotate_file(self) -> None:
        olds = rotated_files(self.path)
        n = int(olds[-1].name.rsplit(".", 1)[1]) + 1 if olds else 1
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{n}"))
        for old in rotated_files(self.path)[: -self.keep] if self.keep else []:
            old.unlink(missing_ok=True)
        if self._fd is not None or self.first_hash is not None:
            self._find_first()

    def position(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest record, read while no record is half-written: a
        reader stamped before this call knows every record older than its stamp is counted."""
        with self._mutex:
            return self.seq, self.head

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
            if self.key is not None:
                record["mac"] = record_mac(self.key, record["hash"])
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
            if self.first_hash is None:
                self.first_seq, self.first_hash = self.seq, self.head
            self._write_head()
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


def verify_files(
    files: Iterable[str | Path], *, key: bytes | None = None, head: Head | None = None
) -> VerifyReport:
    """Check the chain across ``files`` (oldest first). Stops at the first break.

    With ``key`` every record's MAC is checked (a record without one is an error once MAC'd
    records have started); with ``head`` the newest and oldest records must match it.
    """
    paths = [Path(f) for f in files]
    report = VerifyReport(files=paths)
    chain = _ChainCheck(report, key)
    for path in paths:
        try:
            lines = list(_lines(path))
        except OSError as exc:
            report.errors.append(f"{path}: cannot read ({exc.strerror or exc})")
            return report
        for lineno, line, torn in lines:
            if not chain.record(f"{path}:{lineno}", line, torn):
                return report
    chain.finish()
    if head is not None:
        _check_head(report, head, key, chain.first_hash)
    return report


class _ChainCheck:
    """The state of :func:`verify_files` as it walks the records: the link to the record
    before, and how many records carry a MAC. Each check appends to ``report``."""

    def __init__(self, report: VerifyReport, key: bytes | None) -> None:
        self.report = report
        self.key = key
        self.prev_hash: str | None = None
        self.prev_seq: int | None = None
        self.first_hash: str | None = None
        self.macs_seen = 0
        self.unmacd = 0

    def record(self, where: str, line: bytes, torn: bool) -> bool:
        """Check one line; False when the chain is broken there (stop)."""
        report = self.report
        try:
            rec = json.loads(line)
            seq, prev, own = int(rec["seq"]), str(rec["prev"]), str(rec["hash"])
        except (ValueError, KeyError, TypeError, AttributeError):
            if torn:
                report.warnings.append(f"{where}: incomplete last line (crash during a write?)")
                return True
            report.errors.append(f"{where}: not an audit record")
            return False
        if record_hash(rec) != own:
            report.errors.append(f"{where}: seq {seq} was modified (its hash does not match)")
            return False
        if not self._mac_ok(where, seq, own, rec.get("mac")):
            return False
        if not self._link_ok(where, seq, prev, own):
            return False
        if torn:
            report.warnings.append(f"{where}: last line has no newline (crash during a write?)")
        if rec.get("event") == TAMPER_EVENT:
            report.errors.append(
                f"{where}: the writer found the log tampered with: {rec.get('reason')}"
            )
        self.prev_hash, self.prev_seq = own, seq
        report.records += 1
        return True

    def _mac_ok(self, where: str, seq: int, own: str, mac: Any) -> bool:
        if self.key is not None:
            if mac is None and self.macs_seen:
                self.report.errors.append(f"{where}: seq {seq} has no MAC (inserted or forged)")
                return False
            if mac is None:
                self.unmacd += 1
            elif not hmac.compare_digest(str(mac), record_mac(self.key, own)):
                self.report.errors.append(
                    f"{where}: seq {seq} MAC does not match: forged or edited without the "
                    "key (or verified with the wrong key)"
                )
                return False
        if mac is not None:
            self.macs_seen += 1
        return True

    def _link_ok(self, where: str, seq: int, prev: str, own: str) -> bool:
        report = self.report
        if self.prev_hash is None:
            if prev != GENESIS:
                report.warnings.append(
                    f"{where}: chain starts at seq {seq}, linked to an earlier file that "
                    "was not given (pruned by rotation, or pass the older files too)"
                )
            report.first_seq = seq
            self.first_hash = own
        elif prev != self.prev_hash:
            report.errors.append(
                f"{where}: seq {seq} does not link to the record before it "
                "(a line was edited, removed or reordered)"
            )
            return False
        if self.prev_seq is not None and seq != self.prev_seq + 1:
            report.errors.append(
                f"{where}: seq {seq} follows seq {self.prev_seq} (a record is missing or moved)"
            )
            return False
        return True

    def finish(self) -> None:
        """After the last record: the chain's head, and the MAC warnings."""
        report = self.report
        if self.prev_hash is not None and self.prev_seq is not None:
            report.head, report.last_seq = self.prev_hash, self.prev_seq
        if self.key is None and self.macs_seen:
            report.warnings.append(
                f"{self.macs_seen} records carry a MAC that was not checked: give the audit key "
                "(--key-file or --key-credential) to detect forged records"
            )
        elif self.unmacd:
            report.warnings.append(
                f"{self.unmacd} records from before the log had a key carry no MAC"
            )


def _check_head(
    report: VerifyReport, head: Head, key: bytes | None, first_hash: str | None
) -> None:
    """The newest and oldest records against the head file."""
    first_seq = report.first_seq if report.first_seq is not None else report.last_seq + 1
    problems = head_problems(
        head, key, report.last_seq, report.head, first_seq, first_hash, lag_ok=True
    )
    report.errors.extend(problems)
    if not problems and report.last_seq == head.seq + 1:
        report.warnings.append(
            f"the head file lags one record (seq {report.last_seq}): the writer stopped "
            "between the record and the head"
        )


def verify_log(
    path: str | Path, *, key: bytes | None = None, head_path: str | Path | None = None
) -> VerifyReport:
    """Verify a log with its rotated predecessors against its head file."""
    hp = Path(head_path) if head_path else default_head_path(path)
    try:
        head = read_head(hp)
    except StorageError as exc:
        report = VerifyReport(files=chain_files(path))
        report.errors.append(str(exc))
        return report
    report = verify_files(chain_files(path), key=key, head=head)
    if head is None:
        report.warnings.append(
            f"{hp}: no head file, so records cut from the end or the start cannot be detected"
        )
    return report


def chain_files(path: str | Path) -> list[Path]:
    """The files to verify for the log at ``path``: its rotated predecessors, then itself."""
    p = Path(path)
    files = rotated_files(p)
    if p.exists():
        files.append(p)
    return files
