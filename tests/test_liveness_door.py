"""The door against real presentation attacks: a NUAA subject is enrolled from their live
webcam frames; replaying the printed-photo frames of that same person (which the recognizer
matches) never unlocks and ends in a lockout, their live frames still unlock. Real detector,
embedder, encrypted-format gallery, the shipped liveness calibration (BPCER 2 %)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from doubles import FakeClock, ManualTimer

from edgeface.camera.replay import ImageDirectorySource
from edgeface.door.actuators import FailSecureActuator, FileRelayActuator
from edgeface.door.audit import AuditLog, verify_files
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.pipeline_identifier import PipelineIdentifier
from edgeface.imaging import load_image
from edgeface.recognition import FacePipeline

pytestmark = pytest.mark.slow
SUBJECT = "0001"


@pytest.fixture(scope="module")
def nuaa(shared_data: Path) -> dict[str, list[Path]]:
    root = shared_data / "spoof" / "nuaa_raw"
    return {lab: sorted((root / lab).glob(f"{SUBJECT}_*.jpg")) for lab in ("live", "spoof")}


@pytest.fixture(scope="module")
def rig(models_ready: None, nuaa):
    from edgeface.detector import DetectorConfig
    from edgeface.gallery.store import Gallery, ModelRef, Template
    from edgeface.liveness import LivenessChecker
    from edgeface.recognition import FacePipeline, PipelineConfig

    pipeline = FacePipeline.from_config(PipelineConfig(detector=DetectorConfig(min_face_size=64)))
    model = ModelRef.of(pipeline.embedder)
    gallery = Gallery(model=model)
    temps = []
    for path in nuaa["live"][:3]:
        r = pipeline.best_face(load_image(path))
        temps.append(Template(r.embedding, float(r.face.score), model))
    ident_id = gallery.add_identity(f"NUAA {SUBJECT}", temps).id
    return pipeline, gallery, ident_id, LivenessChecker.from_config()


def run_door(tmp_path: Path, frames: list[Path], rig):
    pipeline, gallery, _, checker = rig
    clock = FakeClock()
    timers = ManualTimer(clock)
    cfg = parse_config(
        {
            "camera": {"kind": "images", "path": str(tmp_path)},
            "actuator": {"kind": "file", "path": str(tmp_path / "relay")},
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            "policy": {"min_face_size": 80, "unlock_s": 5.0},
            "recognition": {"max_fps": 5.0},
        }
    )
    assert cfg.liveness.required
    door = FacePipeline(pipeline.detector, pipeline.embedder, min_face_size=80)
    ident = PipelineIdentifier(door, gallery=gallery, threshold=pipeline.threshold(1e-3),
                               liveness=checker)  # fmt: skip
    observations = []
    inner = ident.identify

    def spy(rgb: np.ndarray):
        timers.fire_due()
        observations.append(inner(rgb))
        return observations[-1]

    ident.identify = spy  # type: ignore[method-assign]
    daemon = DoorDaemon(
        cfg,
        source=ImageDirectorySource(files=frames, clock=clock),
        identifier=ident,
        actuator=FailSecureActuator(
            FileRelayActuator(tmp_path / "relay"), timer_factory=timers.factory
        ),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        clock=clock,
        sleep=clock.sleep,
    )
    assert daemon.run() == 0
    assert verify_files([tmp_path / "audit.jsonl"]).ok
    recs = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return daemon, recs, observations


def test_printed_photos_of_an_enrolled_person_never_unlock(tmp_path, rig, nuaa) -> None:
    _, _, ident_id, _ = rig
    frames = nuaa["spoof"][:40]
    daemon, recs, obs = run_door(tmp_path, frames, rig)
    events = [r["event"] for r in recs]
    assert "unlock" not in events and daemon.stats.unlocks == 0
    # the recognizer alone would have let the photo in: it matches the enrolled person
    assert sum(o.identity_id == ident_id for o in obs) >= 3
    spoofs = [r for r in recs if r["event"] == "spoof"]
    assert spoofs and all(r["reason"] == "spoof" and r["liveness"] < r["liveness_threshold"]
                          for r in spoofs)  # fmt: skip
    rejected = [r for r in recs if r["event"] == "rejected"]
    assert rejected and all(r["reason"] == "spoof" for r in rejected)
    assert "lockout" in events  # failed attempts feed the anti-hammering lockout


def test_live_frames_of_the_same_person_unlock(tmp_path, rig, nuaa) -> None:
    _, _, ident_id, _ = rig
    frames = nuaa["live"][3:18]
    _, recs, _ = run_door(tmp_path, frames, rig)
    unlocks = [r for r in recs if r["event"] == "unlock"]
    assert unlocks and unlocks[0]["identity_id"] == ident_id
    assert unlocks[0]["liveness"] >= unlocks[0]["liveness_threshold"]
