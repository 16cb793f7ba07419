"""The audit log against someone who can write its file: with the HMAC key and the head file,
`edgeface audit verify` fails (exit 1, one line naming the case) for an emptied log, a cut
tail, a deleted first line, an appended record with a recomputed hash, and a middle record
edited with every later hash recomputed. The writer itself records a mismatch it finds."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.door.audit import (
    TAMPER_EVENT,
    AuditLog,
    chain_files,
    default_head_path,
    encode_record,
    load_audit_key,
    record_hash,
    verify_log,
)

KEY = secrets.token_bytes(32)


def write_log(path: Path, n: int = 8, key: bytes | None = KEY, **kw) -> AuditLog:
    log = AuditLog(path, key=key, **kw)
    for i in range(n):
        log.append("unlock" if i % 2 else "rejected", identity_id=f"id-{i}", score=0.5)
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def rewrite(path: Path, ls: list[str]) -> None:
    path.write_text("".join(x + "\n" for x in ls))


def rechain(records: list[dict]) -> list[str]:
    """What a forger without the key does: fix every hash and prev link after an edit."""
    prev = records[0]["prev"]
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k not in ("hash",)}
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
        out.append(encode_record(r).decode())
    return out


def verify(path: Path, key: bytes | None = KEY):
    return verify_log(path, key=key)


@pytest.fixture()
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "door.jsonl"
    write_log(path).close()
    assert verify(path).ok and verify(path).records == 8
    return path


def test_intact_log_verifies_with_macs_and_head(log_path: Path) -> None:
    recs = [json.loads(x) for x in lines(log_path)]
    assert all(len(r["mac"]) == 64 for r in recs)
    head = json.loads(default_head_path(log_path).read_text())
    assert head["seq"] == 7 and head["hash"] == recs[-1]["hash"]
    assert head["first_seq"] == 0 and head["first_hash"] == recs[0]["hash"]
    no_key = verify(log_path, key=None)
    assert no_key.ok and any("not checked" in w for w in no_key.warnings)
    assert not verify(log_path, key=secrets.token_bytes(32)).ok  # the wrong key


def test_emptied_log_is_caught(log_path: Path) -> None:
    log_path.write_bytes(b"")
    rep = verify(log_path)
    assert not rep.ok and "log is empty" in rep.errors[0]
    log_path.unlink()  # deleted altogether: the same
    assert "log is empty" in verify(log_path).errors[0]


def test_dropped_tail_is_caught(log_path: Path) -> None:
    rewrite(log_path, lines(log_path)[:-2])
    rep = verify(log_path)
    assert not rep.ok and "after seq 5 were cut off" in rep.errors[0]


def test_deleted_first_line_is_caught(log_path: Path) -> None:
    rewrite(log_path, lines(log_path)[1:])
    rep = verify(log_path)
    assert not rep.ok and "seq 0..0 at the start were deleted" in rep.errors[0]


def test_forged_appended_record_is_caught(log_path: Path) -> None:
    last = json.loads(lines(log_path)[-1])
    forged = {"seq": last["seq"] + 1, "time": last["time"] + 1, "iso": last["iso"],
              "event": "unlock", "identity_id": "id-0", "prev": last["hash"]}  # fmt: skip
    forged["hash"] = record_hash(forged)
    forged["mac"] = "0" * 64
    rewrite(log_path, [*lines(log_path), encode_record(forged).decode()])
    rep = verify(log_path)
    assert not rep.ok and "seq 8 MAC does not match" in rep.errors[0]
    del forged["mac"]  # without a MAC at all
    rewrite(log_path, [*lines(log_path)[:-1], encode_record(forged).decode()])
    assert "seq 8 has no MAC" in verify(log_path).errors[0]


def test_edited_middle_record_with_recomputed_hashes_is_caught(log_path: Path) -> None:
    recs = [json.loads(x) for x in lines(log_path)]
    recs[3]["event"] = "rejected"
    recs[3]["identity_id"] = "id-9"
    forged = rechain(recs)
    rewrite(log_path, forged)
    rep = verify(log_path)
    assert not rep.ok and "seq 3 MAC does not match" in rep.errors[0]


def test_cut_tail_with_a_rewritten_head_is_caught(log_path: Path) -> None:
    kept = lines(log_path)[:-2]
    rewrite(log_path, kept)
    head_path = default_head_path(log_path)
    head = json.loads(head_path.read_text())
    head.update(seq=json.loads(kept[-1])["seq"], hash=json.loads(kept[-1])["hash"])
    head_path.write_text(json.dumps(head))  # the MAC of the old head no longer fits
    rep = verify(log_path)
    assert not rep.ok and rep.errors == [
        "head file: MAC does not match (forged, or written with another key)"
    ]


def test_writer_records_a_cut_log_so_the_next_append_cannot_hide_it(log_path: Path) -> None:
    rewrite(log_path, lines(log_path)[:-3])
    log = write_log(log_path, 2)
    events = [json.loads(x)["event"] for x in lines(log_path)]
    assert events[5] == TAMPER_EVENT
    assert "cut off" in json.loads(lines(log_path)[5])["reason"]
    assert log.tamper
    rep = verify(log_path)  # the head now matches, but the tamper record stays in the chain
    assert not rep.ok and "found the log tampered with" in rep.errors[0]


def test_rotation_and_pruning_move_the_pinned_first_record(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path, 200, max_bytes=4096, keep=2).close()
    rep = verify(path)
    assert rep.ok and rep.first_seq > 0, rep.errors
    oldest = chain_files(path)[0]
    oldest.unlink()  # removing the oldest kept file is caught: the head pins its first record
    assert "at the start were deleted" in verify(path).errors[0]


def test_key_from_systemd_credential(tmp_path: Path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgeface-audit.key").write_text(KEY.hex() + "\n")
    (creds / "edgeface-audit.key").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_audit_key(credential="edgeface-audit.key") == KEY


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def test_cli_reports_each_case(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    assert cli("audit", "create-key", str(key_file)).returncode == 0
    key = load_audit_key(key_file=key_file)
    assert key is not None
    cases = {
        "emptied": (lambda ls: [], "log is empty"),
        "tail": (lambda ls: ls[:-1], "were cut off"),
        "first": (lambda ls: ls[1:], "at the start were deleted"),
    }
    for name, (fn, message) in cases.items():
        path = tmp_path / name / "door.jsonl"
        path.parent.mkdir()
        write_log(path, key=key).close()
        ok = cli("audit", "verify", str(path), "--key-file", str(key_file))
        assert ok.returncode == 0 and "ok: 8 records" in ok.stdout, ok.stdout + ok.stderr
        rewrite(path, fn(lines(path)))
        out = cli("audit", "verify", str(path), "--key-file", str(key_file))
        assert out.returncode == 1 and "TAMPERED: " in out.stdout, (name, out.stdout)
        assert message in out.stdout, (name, out.stdout)
