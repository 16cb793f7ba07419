"""Door details an operator relies on: the threshold follows target_fpir and the gallery's
size; decisions are logged at INFO (name, or id only); rejected and lockout records carry a
reason; a start-up failure is audited; the relay ends locked and closed even when the audit log
fails in the daemon's ``finally``; --check names a missing audit directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import SHARED
from doubles import FakeClock, ManualTimer, ScriptedIdentifier, stranger

from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
from edgeface.door.audit import AuditLog
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.health import check_audit
from edgeface.door.identify import Observation
from edgeface.door.threshold import ThresholdRule
from edgeface.errors import ConfigError, StorageError
from edgeface.recognition.calibration import Calibration, far_for_fpir

LFW = SHARED / "data" / "lfw" / "images"
FACES = sorted((LFW / "Colin_Powell").glob("*.jpg"))[:3]
CAL = Calibration(
    "m",
    "0" * 64,
    {"1e-03": 0.34, "1e-04": 0.41, "1e-05": 0.47, "1e-06": 0.53},
    support={"1e-06": {"impostor_pairs": 24_000_000, "impostors_above": 23}},
)


def raw(tmp_path: Path, **sections: dict) -> dict:
    return {
        "camera": {"kind": "images", "path": str(tmp_path)},
        "actuator": {"kind": "file", "path": str(tmp_path / "relay")},
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        **sections,
    }


def test_threshold_scales_with_the_gallery(tmp_path: Path) -> None:
    cfg = parse_config(raw(tmp_path))
    assert cfg.recognition.target_fpir == 1e-4 and cfg.recognition.threshold is None
    rule = ThresholdRule(cfg.recognition, CAL)
    assert far_for_fpir(1e-4, 100) == pytest.approx(1e-6)
    one, hundred = rule.choose(1), rule.choose(100)
    assert (one.threshold, one.calibrated_far) == (0.41, "1e-04")
    assert (hundred.threshold, hundred.calibrated_far) == (0.53, "1e-06")
    assert hundred.impostors_above == 23 and not hundred.beyond_calibration
    assert rule.choose(10).threshold == 0.47  # FAR 1e-5
    assert rule.choose(20).threshold == 0.53  # FAR 5e-6: the next stricter entry
    big = rule.choose(1000)  # FAR 1e-7: stricter than any calibrated entry
    assert big.threshold == 0.53 and big.beyond_calibration and "WARNING" in big.describe()
    assert "for 100 enrolled" in hundred.describe() and "23 of 24000000" in hundred.describe()


def test_far_and_threshold_still_work_and_exclude_each_other(tmp_path: Path) -> None:
    far = parse_config(raw(tmp_path, recognition={"far": 1e-3})).recognition
    assert far.target_fpir is None and ThresholdRule(far, CAL).choose(500).threshold == 0.34
    pinned = parse_config(raw(tmp_path, recognition={"threshold": 0.6})).recognition
    assert ThresholdRule(pinned, None).choose(500).threshold == 0.6
    with pytest.raises(ConfigError, match="give one of"):
        parse_config(raw(tmp_path, recognition={"far": 1e-3, "target_fpir": 1e-4}))
    with pytest.raises(ConfigError, match="no calibration"):
        ThresholdRule(parse_config(raw(tmp_path)).recognition, None)


def named(score: float = 0.8) -> Observation:
    """Alice, live (the door requires liveness by default)."""
    return Observation("id-alice", "Alice Example", score, 0.5, 0.99, 120.0, 0.99, 0.5)


class BrokenAudit(AuditLog):
    """A real log whose disk fills up after ``ok`` records."""

    def __init__(self, path: Path, ok: int) -> None:
        super().__init__(path)
        self.ok = ok

    def append(self, event: str, **fields):  # type: ignore[override]
        if self.seq + 1 >= self.ok:
            raise StorageError(f"{self.path}: cannot write audit record (No space left on device)")
        return super().append(event, **fields)


def daemon(tmp_path: Path, script: list, audit: AuditLog | None = None, **sections):
    from edgeface.camera.replay import ImageDirectorySource

    clock = FakeClock()
    timers = ManualTimer(clock)
    cfg = parse_config(raw(tmp_path, recognition={"max_fps": 5.0}, **sections))
    relay = tmp_path / "relay"
    d = DoorDaemon(
        cfg,
        source=ImageDirectorySource(files=FACES, loop=True, clock=clock),
        identifier=ScriptedIdentifier(script, cycle=False),
        actuator=FailSecureActuator(FileRelayActuator(relay), timer_factory=timers.factory),
        audit=audit or AuditLog(tmp_path / "audit.jsonl"),
        clock=clock,
        sleep=clock.sleep,
    )
    return d, relay


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_decisions_are_logged_by_name_or_id(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edgeface.door")
    d, _ = daemon(tmp_path, [named()] * 3 + [stranger()] * 60)  # open 5 s, then strangers
    d.run(63)
    text = caplog.text
    assert "unlock: Alice Example (3 votes, score 0.800 >= 0.500)" in text
    assert "rejected: no enrolled match in 3 of 5 frames (last best score 0.200" in text
    caplog.clear()
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    d, _ = daemon(quiet, [named()] * 3, daemon={"log_names": False})
    d.run(3)
    assert "unlock: id id-alice" in caplog.text and "Alice" not in caplog.text


def test_rejections_and_lockouts_carry_a_reason(tmp_path: Path) -> None:
    d, _ = daemon(tmp_path, [stranger()] * 30, lockout={"failures": 2})
    d.run(30)
    recs = records(tmp_path)
    denied = [r for r in recs if r["event"] in ("rejected", "lockout")]
    assert {r["event"] for r in denied} == {"rejected", "lockout"}
    assert all(r.get("reason") for r in denied)
    assert (
        "too many failed attempts" in next(r for r in denied if r["event"] == "lockout")["reason"]
    )


def test_relay_locked_and_closed_when_the_audit_fails_in_finally(tmp_path: Path) -> None:
    audit = BrokenAudit(tmp_path / "audit.jsonl", ok=2)  # start + unlock, then the disk is full
    d, relay = daemon(tmp_path, [named()] * 3 + [named()] * 5, audit=audit, policy={"unlock_s": 30})
    closed: list[bool] = []
    real_close = d.actuator.close
    d.actuator.close = lambda: (closed.append(True), real_close())[1]  # type: ignore[method-assign]
    code = d.run(8)
    assert read_relay_state(relay) == "locked" and closed == [True]
    assert code != 0  # the stop could not be recorded: exit non-zero so systemd notices
    assert [r["event"] for r in records(tmp_path)] == ["start", "unlock"]


def test_startup_failure_is_audited(tmp_path: Path, lfw_dir: Path) -> None:
    from edgeface.door.service import build_daemon
    from edgeface.gallery import create_key_file

    create_key_file(tmp_path / "g.key")
    cfg = parse_config(
        raw(
            tmp_path,
            gallery={"path": str(tmp_path / "missing.efg"), "key_file": str(tmp_path / "g.key")},
            recognition={"embedder_path": str(tmp_path / "no-such-model.onnx")},
        )
    )
    with pytest.raises(Exception) as err:
        build_daemon(cfg)
    recs = records(tmp_path)
    assert [r["event"] for r in recs] == ["fault"]
    assert recs[0]["kind"] == "startup" and recs[0]["error"] == type(err.value).__name__
    assert recs[0]["reason"]


def test_check_says_a_missing_audit_directory_does_not_exist(tmp_path: Path) -> None:
    cfg = parse_config(raw(tmp_path, audit={"path": str(tmp_path / "a" / "b" / "door.jsonl")}))
    res = check_audit(cfg)
    assert not res.ok and "does not exist" in res.message
    cfg = parse_config(raw(tmp_path, audit={"path": str(tmp_path / "new" / "door.jsonl")}))
    res = check_audit(cfg)
    assert res.ok and "does not exist yet" in res.message


def test_lock_only_drives_the_relay_locked(tmp_path: Path) -> None:
    import subprocess
    import sys

    relay = tmp_path / "relay"
    FileRelayActuator(relay).unlock()  # as a crashed daemon could leave a file/command relay
    assert read_relay_state(relay) == "unlocked"
    cfg = tmp_path / "door.toml"
    cfg.write_text(
        f'[camera]\nkind = "images"\npath = "{tmp_path}"\n'
        f'[actuator]\nkind = "file"\npath = "{relay}"\n'
        f'[gallery]\npath = "{tmp_path / "missing.efg"}"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", "door", "--config", str(cfg), "--lock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert read_relay_state(relay) == "locked"
