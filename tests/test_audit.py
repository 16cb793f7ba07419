"""The hash-chained audit log: verifies when intact; catches an edited (also the last), removed
or reordered line; rotation keeps one chain; a torn final write is set aside, not edited."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from edgeface.door.audit import GENESIS, AuditLog, chain_files, rotated_files, verify_files


def write_log(path: Path, n: int = 6, **kw: object) -> AuditLog:
    log = AuditLog(path, **kw)  # type: ignore[arg-type]
    for i in range(n):
        log.append(
            "unlock" if i % 2 else "rejected",
            identity_id=f"id-{i}",
            score=0.5 + i / 100,
            threshold=0.42,
            quality=0.99,
            face_size=120.0,
        )
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_records_chain_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    log = write_log(path)
    recs = [json.loads(x) for x in lines(path)]
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(recs))
    assert [r["seq"] for r in recs] == list(range(6))
    assert set(recs[1]) >= {"time", "iso", "event", "identity_id", "score", "threshold", "quality"}
    assert not any("image" in k for r in recs for k in r)
    rep = verify_files([path])
    assert rep.ok and rep.records == 6 and rep.head == log.head == recs[-1]["hash"]


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path, 3).close()
    write_log(path, 3).close()
    rep = verify_files([path])
    assert rep.ok and rep.records == 6 and rep.last_seq == 5


def tamper(path: Path, fn) -> None:
    ls = lines(path)
    path.write_text("\n".join(fn(ls)) + "\n")


def test_edited_line_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path)

    def edit(ls: list[str]) -> list[str]:
        ls[2] = ls[2].replace('"identity_id":"id-2"', '"identity_id":"id-9"')
        return ls

    tamper(path, edit)
    rep = verify_files([path])
    assert not rep.ok and "door.jsonl:3" in rep.errors[0] and "modified" in rep.errors[0]


def test_edited_last_line_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path)
    tamper(path, lambda ls: [*ls[:-1], ls[-1].replace('"event":"unlock"', '"event":"relock"')])
    rep = verify_files([path])
    assert not rep.ok and "door.jsonl:6" in rep.errors[0]


def test_removed_line_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path)
    tamper(path, lambda ls: ls[:3] + ls[4:])
    rep = verify_files([path])
    assert not rep.ok and "door.jsonl:4" in rep.errors[0] and "does not link" in rep.errors[0]


def test_reordered_lines_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path)
    tamper(path, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]])
    assert not verify_files([path]).ok


def test_removed_first_line_shows_as_a_broken_start(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path)
    tamper(path, lambda ls: ls[1:])
    rep = verify_files([path])
    assert rep.ok is True and rep.first_seq == 1  # chain itself is consistent, but...
    assert "chain starts at seq 1" in rep.warnings[0]  # ...it does not start at genesis


def test_rotation_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    log = write_log(path, 120, max_bytes=4096, keep=50)
    olds = rotated_files(path)
    assert len(olds) >= 3
    first_of_new = json.loads(lines(path)[0])
    last_of_old = json.loads(lines(olds[-1])[-1])
    assert first_of_new["prev"] == last_of_old["hash"]
    rep = verify_files(chain_files(path))
    assert rep.ok and rep.records == 120 and rep.head == log.head
    # dropping a middle file breaks the chain at the next file's first line
    rest = [p for p in chain_files(path) if p != olds[1]]
    bad = verify_files(rest)
    assert not bad.ok and olds[2].name in bad.errors[0]


def test_keep_prunes_old_files(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path, 200, max_bytes=4096, keep=2)
    assert len(rotated_files(path)) == 2
    rep = verify_files(chain_files(path))
    assert rep.ok and rep.first_seq > 0 and "pruned" in rep.warnings[0]


def test_torn_last_write_is_set_aside_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path, 3).close()
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"event":"unl')  # power cut in the middle of a write
    log = write_log(path, 2)
    assert len(rotated_files(path)) == 1
    rep = verify_files(chain_files(path))
    assert rep.ok and rep.records == 5 and rep.last_seq == log.seq
    assert any("incomplete last line" in w for w in rep.warnings)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "door.jsonl"
    write_log(path, 50, max_bytes=4096)
    ok = cli("audit", "verify", str(path))
    assert ok.returncode == 0 and "ok: 50 records" in ok.stdout
    tamper(path, lambda ls: ls[:1] + ls[2:])
    bad = cli("audit", "verify", str(path), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False
    missing = cli("audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    garbage = tmp_path / "g.jsonl"
    garbage.write_text("hello\n")
    out = cli("audit", "verify", str(garbage))
    assert out.returncode == 1 and "not an audit record" in out.stdout
