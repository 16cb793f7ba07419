"""Recognition pipeline on real faces: verify, identify, face selection (size first, the same
face for the door), no-face results, stage timings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.door.pipeline_identifier import PipelineIdentifier
from edgeface.errors import ConfigError
from edgeface.gallery.store import Gallery, ModelRef, Template
from edgeface.imaging import load_image
from edgeface.recognition import Calibration, FacePipeline
from edgeface.recognition.pipeline import select_face
from edgeface.types import Face

GROUP = "detection/dlib_faces/2008_001009.jpg"  # girl (smaller, top) and woman (larger, below)


def img(lfw_dir: Path, name: str, n: int) -> np.ndarray:
    return load_image(lfw_dir / "images" / name / f"{name}_{n:04d}.jpg")


def test_same_person_verifies_and_different_people_do_not(
    pipeline: FacePipeline, lfw_dir: Path
) -> None:
    same = pipeline.verify(img(lfw_dir, "Tony_Blair", 1), img(lfw_dir, "Tony_Blair", 10))
    diff = pipeline.verify(img(lfw_dir, "Tony_Blair", 1), img(lfw_dir, "Colin_Powell", 1))
    assert same.same and not diff.same
    assert same.score is not None and diff.score is not None and same.score > diff.score
    assert same.threshold == pipeline.threshold(1e-3)


def test_stricter_far_means_a_higher_threshold(pipeline: FacePipeline) -> None:
    assert pipeline.threshold(1e-2) < pipeline.threshold(1e-3) < pipeline.threshold(1e-4)
    with pytest.raises(ConfigError, match=r"no threshold calibrated for FAR 0\.5"):
        pipeline.threshold(0.5)


def test_no_face_is_a_result_not_a_crash(pipeline: FacePipeline, lfw_dir: Path) -> None:
    blank = np.full((240, 320, 3), 127, np.uint8)
    res = pipeline.verify(img(lfw_dir, "Tony_Blair", 1), blank)
    assert res.score is None and not res.same and res.no_face == (False, True)
    ident = pipeline.identify(blank, {"x": np.ones((1, 128), np.float32) / np.sqrt(128)})
    assert ident.no_face and ident.label is None and ident.top == []
    assert pipeline.best_face(blank) is None


def test_tiny_face_is_not_found_below_min_size(pipeline: FacePipeline, lfw_dir: Path) -> None:
    import cv2

    small = cv2.resize(img(lfw_dir, "Tony_Blair", 1), (40, 40), interpolation=cv2.INTER_AREA)
    found = pipeline.detector.detect(small)
    assert found and found[0].size < pipeline.min_face_size  # MTCNN still finds the ~15 px face
    assert pipeline.best_face(small) is None  # but it is too small to recognize
    assert pipeline.verify(small, img(lfw_dir, "Tony_Blair", 1)).no_face == (True, False)


def test_several_faces_largest_or_central(pipeline: FacePipeline, shared_data: Path) -> None:
    image = load_image(shared_data / GROUP)
    faces = pipeline.detector.detect(image)
    assert len(faces) == 2
    largest = select_face(faces, image.shape, "largest")
    assert largest is not None and largest.area == max(f.area for f in faces)
    # crop so that the smaller face is the central one
    top = image[:260]
    central = select_face(pipeline.detector.detect(top), top.shape, "central")
    assert central is not None and central.center[1] < 150
    results = pipeline.analyze(image)
    assert [r.face.area for r in results] == sorted((r.face.area for r in results), reverse=True)


def test_identify_top_k_and_unknown(pipeline: FacePipeline, lfw_dir: Path) -> None:
    people = ["Tony_Blair", "Hugo_Chavez", "Jacques_Chirac", "Jennifer_Capriati"]
    templates = {}
    for name in people:
        faces = [pipeline.best_face(img(lfw_dir, name, n)) for n in (1, 2)]
        templates[name] = np.stack([f.embedding for f in faces if f is not None])
    hit = pipeline.identify(img(lfw_dir, "Hugo_Chavez", 5), templates, top_k=3)
    assert hit.label == "Hugo_Chavez" and len(hit.top) == 3 and hit.top[0][0] == "Hugo_Chavez"
    assert hit.score is not None and hit.score >= hit.threshold
    stranger = pipeline.identify(img(lfw_dir, "Colin_Powell", 3), templates)
    assert stranger.label is None and stranger.face is not None  # unknown, but a face


def test_calibration_for_another_model_is_refused(pipeline: FacePipeline) -> None:
    other = Calibration("some-other-model", "0" * 64, {"1e-03": 0.3})
    with pytest.raises(ConfigError, match="calibration is for embedding model"):
        FacePipeline(pipeline.detector, pipeline.embedder, other)


def face_at(x: float, y: float, side: float) -> Face:
    box = (x - side / 2, y - side / 2, x + side / 2, y + side / 2)
    return Face(box, 0.99, np.zeros((5, 2), np.float32))


def test_select_face_filters_by_size_first_then_selects() -> None:
    central_small, big_aside = face_at(100, 100, 60), face_at(30, 30, 80)
    faces = [central_small, big_aside]
    shape = (200, 200, 3)
    assert select_face(faces, shape, "central") is central_small
    assert select_face(faces, shape, "central", min_size=70) is big_aside
    assert select_face(faces, shape, "largest", min_size=70) is big_aside
    assert select_face(faces, shape, "central", min_size=90) is None
    assert select_face([], shape, "central") is None
    with pytest.raises(ConfigError, match="unknown face selection"):
        select_face(faces, shape, "leftmost")  # type: ignore[arg-type]


def test_door_and_pipeline_pick_the_same_face(pipeline: FacePipeline, shared_data: Path) -> None:
    """The divergence of issue 14: two faces, the central one (64.9 px) below the minimum
    size (68.8 px) and a bigger one (72.7 px) beside it. Size first, then selection: both the
    pipeline and the door embed the 72.7 px face; the door used to pick the central face,
    reject it as too small, and embed nothing."""
    top = load_image(shared_data / GROUP)[:260]
    faces = pipeline.detector.detect(top)
    assert sorted(round(f.size, 1) for f in faces) == [64.9, 72.7]
    assert select_face(faces, top.shape, "central").size < 68.8  # type: ignore[union-attr]
    central = FacePipeline(
        pipeline.detector, pipeline.embedder, select="central", min_face_size=68.8
    )
    best = central.best_face(top)
    assert best is not None and round(best.face.size, 1) == 72.7

    model = ModelRef.of(pipeline.embedder)
    gallery = Gallery(model=model)
    gallery.add_identity("Woman", [Template(best.embedding, 1.0, model)])
    door = PipelineIdentifier(central, gallery=gallery, threshold=0.5)
    obs = door.identify(top)
    assert obs.name == "Woman" and obs.score == pytest.approx(1.0, abs=1e-5)
    assert round(obs.face_size, 1) == 72.7
    # the pipeline told the door how long each of its stages took
    assert {k: door.counts[k] for k in ("detect", "align", "embed", "match")} == dict.fromkeys(
        ("detect", "align", "embed", "match"), 1
    )
    assert door.counts["liveness"] == 0 and door.timings["embed"] > 0


def test_find_reports_the_stages_and_the_detected_faces(
    pipeline: FacePipeline, shared_data: Path
) -> None:
    image = load_image(shared_data / GROUP)
    stages: list[str] = []
    found = pipeline.find(image, timer=lambda stage, s: stages.append(stage))
    assert stages == ["detect", "align", "embed"] and len(found.detected) == 2
    assert found.best is not None and found.best.face.area == max(f.area for f in found.detected)
    stages.clear()
    blank = np.full((120, 160, 3), 127, np.uint8)
    assert pipeline.find(blank, timer=lambda stage, s: stages.append(stage)).best is None
    assert stages == ["detect"]  # nothing to align or embed
