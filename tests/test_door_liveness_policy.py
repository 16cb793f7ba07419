"""Liveness in the door's decision: spoof frames never vote, are audited, and fail attempts;
the ``[liveness]`` config section. Real frames replayed through the real door:
test_liveness_door.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from doubles import enrolled, spoof_of

from edgeface.door.config import PolicyConfig, parse_config
from edgeface.door.identify import Observation
from edgeface.door.policy import DecisionPolicy, Verdict
from edgeface.errors import ConfigError

LIVE, PHOTO = enrolled("id-alice"), spoof_of("id-alice")


def feed(policy: DecisionPolicy, script: list[Observation], dt: float = 0.2) -> list[Verdict]:
    return [policy.observe(o, now=1000 + i * dt).verdict for i, o in enumerate(script)]


def test_spoof_frames_of_an_enrolled_face_never_vote() -> None:
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    verdicts = feed(p, [PHOTO] * 20)
    assert Verdict.UNLOCK not in verdicts
    assert verdicts.count(Verdict.SPOOF) == 16 and verdicts.count(Verdict.REJECTED) == 4


def test_spoof_attempt_is_rejected_with_reason_spoof() -> None:
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    decisions = [p.observe(o, now=1000 + i * 0.2) for i, o in enumerate([PHOTO] * 5)]
    assert decisions[-1].verdict is Verdict.REJECTED and decisions[-1].reason == "spoof"


def test_live_frames_still_unlock_and_mixed_frames_need_k_live_votes() -> None:
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    assert feed(p, [LIVE] * 3)[-1] is Verdict.UNLOCK
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    verdicts = feed(p, [LIVE, PHOTO, LIVE, PHOTO, LIVE])
    assert verdicts[-1] is Verdict.UNLOCK  # three live votes within n = 5


def test_no_liveness_score_never_counts_when_required() -> None:
    unchecked = Observation("id-alice", "alice", 0.9, 0.5, 0.99, 120.0)
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    assert Verdict.UNLOCK not in feed(p, [unchecked] * 10)
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=False)
    assert feed(p, [unchecked] * 3)[-1] is Verdict.UNLOCK


def test_mean_liveness_of_the_votes_is_checked() -> None:
    p = DecisionPolicy(PolicyConfig(k=3, n=5), require_liveness=True)
    frames = [enrolled("id-alice", liveness=v) for v in (0.9, 0.95, 0.99)]
    assert feed(p, frames)[-1] is Verdict.UNLOCK
    assert p._mean_liveness("id-nobody") != p._mean_liveness("id-nobody")  # NaN: no votes


BASE = {
    "camera": {"kind": "images", "path": "."},
    "actuator": {"kind": "dryrun"},
}


def test_liveness_section_defaults_to_required() -> None:
    cfg = parse_config(BASE)
    assert cfg.liveness.required is True and cfg.liveness.threshold is None
    assert cfg.liveness.target_bpcer == 0.02


def test_liveness_section_is_validated(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "liveness": {"threshold": 0.4, "paths": ["a.onnx", "b.onnx"]}},
                       base=tmp_path)  # fmt: skip
    assert cfg.liveness.threshold == 0.4
    assert cfg.liveness.paths == (tmp_path / "a.onnx", tmp_path / "b.onnx")
    bad = [
        ({"threshold": 1.5}, "liveness.threshold"),
        ({"threshold": 0.4, "target_bpcer": 0.05}, "liveness.threshold"),
        ({"paths": ["only-one.onnx"]}, "liveness.paths"),
        ({"requird": False}, "liveness.requird: unknown key"),
        ({"required": "no"}, "liveness.required"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config({**BASE, "liveness": section})


def test_turning_liveness_off_warns_at_every_start(tmp_path: Path, caplog) -> None:
    from doubles import ScriptedIdentifier

    from edgeface.camera.replay import ImageDirectorySource
    from edgeface.door.actuators import DryRunActuator, FailSecureActuator
    from edgeface.door.audit import AuditLog
    from edgeface.door.daemon import DoorDaemon

    raw = {**BASE, "camera": {"kind": "images", "path": str(tmp_path)},
           "liveness": {"required": False}}  # fmt: skip
    cfg = parse_config(raw)
    for _ in range(2):
        daemon = DoorDaemon(
            cfg,
            source=ImageDirectorySource(files=[], loop=False),
            identifier=ScriptedIdentifier([LIVE]),
            actuator=FailSecureActuator(DryRunActuator()),
            audit=AuditLog(tmp_path / "audit.jsonl"),
        )
        with caplog.at_level(logging.WARNING, logger="edgeface.door"):
            daemon.run(max_frames=0)
    warnings = [r for r in caplog.records if "liveness.required = false" in r.getMessage()]
    assert len(warnings) == 2
    starts = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["liveness"] for r in starts if r["event"] == "start"] == ["off", "off"]
