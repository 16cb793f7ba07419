"""The door with face tracking: a person walks up and stays, through the real daemon.

Tracking only shortens the search for the face; every identified frame is still aligned,
embedded and compared on its own, so the policy counts the same votes as with the full
cascade on every frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import test_door_real_faces as real

from edgeface.detector import MTCNNDetector
from edgeface.detector.tracking import TrackingConfig, TrackingDetector
from edgeface.door.config import parse_config
from edgeface.imaging import load_image

# the same enrolled people, gallery and threshold as the door's other real-face tests
door_pipeline = real.door_pipeline
gallery_files = real.gallery_files
threshold = real.threshold


def walk_up(photo: np.ndarray, frames: int) -> list[np.ndarray]:
    """640x480 frames: the photo grows from 0.6x to ~1.5x while moving in, then stays."""
    out = []
    for k in range(frames):
        step = min(k, 12)
        scale = 0.6 * 1.08**step
        p = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), 100, np.uint8)
        h, w = p.shape[:2]
        x, y = 120 + 8 * step, max(0, 240 - h // 2)
        canvas[y : y + min(h, 480), x : x + w] = p[: 480 - y]
        out.append(canvas)
    return out


def test_walk_up_unlocks_with_tracking_and_the_same_votes(
    tmp_path, lfw_dir, door_pipeline, gallery_files, threshold
) -> None:
    frames = walk_up(load_image(real.img(lfw_dir, "Colin_Powell", 40)), 20)
    tracking = TrackingDetector(door_pipeline.detector, TrackingConfig(full_every=3))
    full_pipeline = door_pipeline
    (tmp_path / "full").mkdir()
    (tmp_path / "tracked").mkdir()
    _, full_recs, _, full_obs = real.run_door(
        tmp_path / "full", frames, full_pipeline, gallery_files, threshold
    )

    class Tracked:
        detector = tracking
        embedder = door_pipeline.embedder

    _, recs, _, obs = real.run_door(tmp_path / "tracked", frames, Tracked, gallery_files, threshold)
    assert tracking.counts["tracked"] >= 10, tracking.counts
    powell = gallery_files[2]["Colin_Powell"]
    unlocks = [r for r in recs if r["event"] == "unlock"]
    assert [r["identity_id"] for r in unlocks] == [powell]
    assert [r["event"] for r in recs] == [r["event"] for r in full_recs]
    # each frame was identified on its own: the same faces, matched the same way
    assert [o.identity_id for o in obs] == [o.identity_id for o in full_obs]
    assert sum(o.identity_id == powell for o in obs) >= 10
    scores = [(a.score, b.score) for a, b in zip(obs, full_obs, strict=True) if a.identity_id]
    assert max(abs(a - b) for a, b in scores) < 0.1


def test_the_door_config_selects_tracking(tmp_path: Path, gallery_files, threshold) -> None:
    from edgeface.door.service import build_identifier

    gpath, key_path, _ = gallery_files
    base = {
        "camera": {"kind": "images", "path": str(tmp_path)},
        "actuator": {"kind": "dryrun"},
        "gallery": {"path": str(gpath), "key_file": str(key_path)},
    }
    cfg = parse_config({**base, "recognition": {"threshold": threshold}})
    assert cfg.recognition.full_detect_every == 3
    ident, _ = build_identifier(cfg)
    try:
        assert isinstance(ident.detector, TrackingDetector)
        # one recognition path: the door's pipeline filters by the policy's face size
        assert ident.pipeline.min_face_size == cfg.policy.min_face_size
        assert ident.detector.tracking.full_every == 3
        assert ident.detector.config.workers == 1  # no helper process by default
    finally:
        ident.detector.close()
    off = {"threshold": threshold, "full_detect_every": 1, "detector_workers": 2}
    ident, _ = build_identifier(parse_config({**base, "recognition": off}))
    try:
        assert isinstance(ident.detector, MTCNNDetector)
        assert ident.detector.config.workers == 2
    finally:
        ident.detector.close()
