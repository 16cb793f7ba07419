"""Recognition pipeline on real faces: verify, identify, face selection, no-face results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.imaging import load_image
from edgeface.recognition import Calibration, FacePipeline
from edgeface.recognition.pipeline import select_face

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
