"""The NumPy MTCNN cascade agrees with an independent implementation on real photos.

The reference is the PyPI ``mtcnn`` 1.0.0 package (TensorFlow), run once by
``tools/make_mtcnn_fixture.py`` on 110 images from ``../shared/data`` (50 LFW, the 10 dlib
photos, 50 face-mask street photos); its boxes, scores and landmarks are in
``tests/fixtures/mtcnn_reference.json``. Both use the same original MTCNN weights, so the two
must find the same faces in the same places.

Criteria (issue 2, item 4):

* the same number of faces on >= 95 % of images;
* faces are paired by greedy one-to-one IoU matching (pairs need IoU >= 0.5 to be paired at
  all); at least :data:`MATCHED_FRACTION` = 98 % of paired faces must have box IoU >= 0.9 and
  all 5 landmarks within 3 % of the face size (``max(w, h)`` of the reference box, Euclidean
  distance).

Why 98 % and not 95 %: the only legitimate differences between the two implementations are
numerical (TensorFlow's area/bilinear resampling vs OpenCV's, float summation order). With
the cascade following the reference's algorithm all 268 paired faces are inside the
tolerance (worst IoU 0.97); the 2 % margin is for resampling differences on tiny faces, which
can let a neighbouring P-Net candidate win (seen with +1 pixel areas in NMS: 266 of 268).
A larger share outside the tolerance means *different candidates* survive the cascade,
i.e. an algorithmic difference, which is what this test exists to catch. Example: greedy NMS
instead of the reference's NMS (which drops a box overlapping *any* higher-scored box, even
one that was itself suppressed) leaves only 92.5 % of faces in tolerance (IoU down to 0.75)
while the counts still agree on 99 % of images; a 95 % rule would let that through.
Bugs such as a left/right landmark swap or shifted boxes
fail by far more (``test_comparator_catches_*``). Boxes are compared after clipping both to the
image, because the reference stores raw (unclipped) boxes and a detector may legitimately clip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgeface.evaluation.detection import iou_matrix, match_pairs

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mtcnn_reference.json"

COUNT_AGREEMENT = 0.95  # share of images with the same number of faces
MATCHED_FRACTION = 0.98  # share of paired faces meeting both criteria (see docstring)
MIN_IOU = 0.9
LANDMARK_TOL = 0.03  # of max(w, h) of the reference box
PAIR_IOU = 0.5  # two boxes below this overlap are not the same face


def _load_fixture() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@dataclass
class Agreement:
    """Tally of the comparison over many images."""

    images: int = 0
    same_count: int = 0
    matched: int = 0
    good: int = 0
    ref_faces: int = 0
    our_faces: int = 0
    worst_iou: float = 1.0
    worst_landmark: float = 0.0
    count_mismatches: list[str] = field(default_factory=list)
    bad_faces: list[str] = field(default_factory=list)

    def add(self, name: str, w: int, h: int, ref: list[dict], ours: list[dict]) -> None:
        self.images += 1
        self.ref_faces += len(ref)
        self.our_faces += len(ours)
        if len(ref) == len(ours):
            self.same_count += 1
        else:
            self.count_mismatches.append(f"{name}: ref {len(ref)} ours {len(ours)}")
        if not ref or not ours:
            return
        limits = np.array([w, h, w, h], dtype=np.float64)
        rb = np.clip(np.array([f["box"] for f in ref], dtype=np.float64), 0, limits)
        ob = np.clip(np.array([f["box"] for f in ours], dtype=np.float64), 0, limits)
        iou = iou_matrix(rb, ob)
        for i, j in match_pairs(iou, PAIR_IOU):
            self.matched += 1
            raw = ref[i]["box"]
            size = max(raw[2] - raw[0], raw[3] - raw[1])
            dist = np.linalg.norm(
                np.asarray(ref[i]["landmarks"]) - np.asarray(ours[j]["landmarks"]), axis=1
            )
            rel = float(dist.max() / size)
            self.worst_iou = min(self.worst_iou, float(iou[i, j]))
            self.worst_landmark = max(self.worst_landmark, rel)
            if iou[i, j] >= MIN_IOU and rel <= LANDMARK_TOL:
                self.good += 1
            else:
                self.bad_faces.append(f"{name} face {i}: IoU {iou[i, j]:.3f}, landmarks {rel:.3f}")

    @property
    def count_rate(self) -> float:
        return self.same_count / max(self.images, 1)

    @property
    def good_rate(self) -> float:
        return self.good / max(self.matched, 1)

    def summary(self) -> str:
        lines = [
            f"images {self.images}: same face count on {self.same_count} "
            f"({self.count_rate:.1%}); faces ref {self.ref_faces} / ours {self.our_faces}",
            f"paired faces {self.matched}: {self.good} ({self.good_rate:.1%}) with IoU >= "
            f"{MIN_IOU} and landmarks <= {LANDMARK_TOL:.0%}; worst IoU {self.worst_iou:.3f}, "
            f"worst landmark error {self.worst_landmark:.3%} of face size",
        ]
        lines += [f"  count differs: {m}" for m in self.count_mismatches]
        lines += [f"  outside tolerance: {m}" for m in self.bad_faces]
        return "\n".join(lines)

    def passes(self) -> bool:
        return (
            self.count_rate >= COUNT_AGREEMENT
            and self.matched > 0
            and self.good_rate >= MATCHED_FRACTION
        )


def _compare(fixture: dict, outputs: dict[str, list[dict]]) -> Agreement:
    agg = Agreement()
    for rec in fixture["images"]:
        agg.add(rec["path"], rec["width"], rec["height"], rec["faces"], outputs[rec["path"]])
    return agg


# ----------------------------------------------------------------------------- fixture sanity


def test_fixture_covers_enough_real_images(shared_data: Path) -> None:
    fx = _load_fixture()
    paths = [r["path"] for r in fx["images"]]
    assert len(paths) >= 100
    assert len(set(paths)) == len(paths)
    assert sum(p.startswith("lfw/") for p in paths) >= 40
    assert sum(p.startswith("detection/dlib_faces/") for p in paths) == 10
    assert sum(p.startswith("detection/masks/") for p in paths) >= 40
    assert fx["reference"] == {**fx["reference"], "package": "mtcnn", "version": "1.0.0"}
    assert fx["params"]["min_face_size"] == 20
    for rec in fx["images"]:
        assert (shared_data / rec["path"]).is_file(), rec["path"]
        for f in rec["faces"]:
            assert len(f["box"]) == 4 and len(f["landmarks"]) == 5
    # the convention the fixture claims: left eye / left mouth corner are image-left
    lfw = [f for r in fx["images"] if r["path"].startswith("lfw/") for f in r["faces"]]
    assert lfw and all(f["landmarks"][0][0] < f["landmarks"][1][0] for f in lfw)
    assert sum(f["landmarks"][3][0] < f["landmarks"][4][0] for f in lfw) >= 0.95 * len(lfw)


# ----------------------------------------------------------------------------- the comparator


def test_comparator_accepts_the_reference_itself() -> None:
    fx = _load_fixture()
    agg = _compare(fx, {r["path"]: r["faces"] for r in fx["images"]})
    assert agg.same_count == agg.images == len(fx["images"])
    assert agg.matched == agg.good == agg.ref_faces
    assert agg.worst_iou == pytest.approx(1.0) and agg.worst_landmark == 0.0
    assert agg.passes()


def test_comparator_catches_swapped_eyes() -> None:
    """A left/right mix-up (the classic landmark-order bug) fails the landmark criterion."""
    fx = _load_fixture()
    swapped = {
        r["path"]: [
            {**f, "landmarks": [f["landmarks"][1], f["landmarks"][0], *f["landmarks"][2:]]}
            for f in r["faces"]
        ]
        for r in fx["images"]
    }
    agg = _compare(fx, swapped)
    assert agg.same_count == agg.images
    assert agg.good_rate < 0.5
    assert not agg.passes()


def test_comparator_catches_shifted_boxes_and_missing_faces() -> None:
    fx = _load_fixture()
    shifted = {}
    for r in fx["images"]:
        faces = []
        for f in r["faces"]:
            x1, y1, x2, y2 = f["box"]
            d = 0.08 * (x2 - x1)  # 8 % of the width sideways -> IoU about 0.85
            faces.append({**f, "box": [x1 + d, y1, x2 + d, y2]})
        shifted[r["path"]] = faces
    assert not _compare(fx, shifted).passes()
    dropped = {r["path"]: r["faces"][1:] for r in fx["images"]}
    agg = _compare(fx, dropped)
    assert agg.count_rate < COUNT_AGREEMENT and not agg.passes()


# ----------------------------------------------------------------------------- the real check


def test_numpy_mtcnn_agrees_with_reference_package(shared_data: Path, models_ready: None) -> None:
    from edgeface.detector import DetectorConfig, MTCNNDetector
    from edgeface.imaging import load_image

    fx = _load_fixture()
    p = fx["params"]
    # Same settings as the reference run (recorded in the fixture), so that any difference
    # is the implementation's, not a different threshold.
    cfg = DetectorConfig(
        min_face_size=p["min_face_size"],
        scale_factor=p["scale_factor"],
        thresholds=(p["threshold_pnet"], p["threshold_rnet"], p["threshold_onet"]),
        nms_pnet_scale=p["nms_pnet1"],
        nms_pnet_all=p["nms_pnet2"],
        nms_rnet=p["nms_rnet"],
        nms_onet=p["nms_onet"],
    )
    det = MTCNNDetector(cfg)
    outputs = {}
    for rec in fx["images"]:
        rgb = load_image(shared_data / rec["path"])
        assert rgb.shape[:2] == (rec["height"], rec["width"])
        outputs[rec["path"]] = [f.to_dict() for f in det.detect(rgb)]
    agg = _compare(fx, outputs)
    print("\nNumPy MTCNN vs mtcnn 1.0.0 (TensorFlow):\n" + agg.summary())
    assert agg.count_rate >= COUNT_AGREEMENT, agg.summary()
    assert agg.matched >= 0.9 * agg.ref_faces, agg.summary()
    assert agg.good_rate >= MATCHED_FRACTION, agg.summary()
