"""Landmark error against dlib's 68-point annotations (the INT8 MTCNN judge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.evaluation.landmarks import (
    five_from_68,
    landmark_errors,
    load_dlib_landmark_sets,
    parse_dlib_landmarks,
)
from edgeface.types import Face


@pytest.fixture(scope="module")
def truth(shared_data: Path):
    return load_dlib_landmark_sets(shared_data / "detection" / "dlib_faces")


def test_dlib_faces_give_five_points_in_image_order(truth) -> None:
    faces = [f for fs in truth.values() for f in fs]
    assert len(truth) == 9 and len(faces) == 43
    for f in faces:
        le, re, nose, ml, mr = f.points
        assert le[0] < re[0] and ml[0] < mr[0]  # as seen in the image, like Face.landmarks
        assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1]) + 1e-9
        x1, _, x2, _ = f.box
        assert x1 - 5 < le[0] and re[0] < x2 + 5 and f.inter_ocular > 5


def test_the_float_cascade_is_close_and_a_landmark_swap_is_not(truth, detector) -> None:
    from edgeface.imaging import load_image

    found = {p: detector.detect(load_image(p)) for p in truth}
    good = landmark_errors(truth, found)
    assert good.missed == 0 and len(good.errors) == 43
    assert good.summary()["nme_mean"] < 0.1  # measured 0.059
    swapped = {
        p: [Face(f.box, f.score, f.landmarks[[1, 0, 2, 4, 3]]) for f in fs]
        for p, fs in found.items()
    }
    assert landmark_errors(truth, swapped).summary()["nme_mean"] > 0.5
    assert landmark_errors(truth, {}).missed == 43


def test_five_from_68_uses_eye_centres_nose_tip_and_mouth_corners() -> None:
    parts = np.zeros((68, 2))
    parts[36:42] = [10, 20]
    parts[42:48] = [30, 20]
    parts[30], parts[48], parts[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_array_equal(
        five_from_68(parts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]
    )
    with pytest.raises(ValueError):
        five_from_68(parts[:5])


def test_bad_landmark_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<dataset><images><image file='a.jpg'>")
    with pytest.raises(ConfigError, match=r"bad\.xml"):
        parse_dlib_landmarks(bad)
    empty = tmp_path / "empty.xml"
    box = "<box top='1' left='1' width='9' height='9'/>"
    empty.write_text(f"<dataset><images><image file='a.jpg'>{box}</image></images></dataset>")
    with pytest.raises(ConfigError, match="no face with 68 landmarks"):
        parse_dlib_landmarks(empty)
    with pytest.raises(ConfigError):
        parse_dlib_landmarks(tmp_path / "missing.xml")
