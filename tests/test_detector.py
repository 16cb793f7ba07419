"""The NumPy MTCNN cascade on real photos, its options and its input contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.detector import DetectorConfig, MTCNNDetector, pyramid_scales
from edgeface.errors import ConfigError, ImageError, ModelError
from edgeface.imaging import load_image

GROUP = "detection/dlib_faces/2008_001009.jpg"  # two faces, one above the other


def test_lfw_portrait_has_one_face_with_plausible_landmarks(shared_data: Path, detector) -> None:
    image = load_image(shared_data / "lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg")
    faces = detector.detect(image)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.99
    cx, cy = f.center
    assert abs(cx - 125) < 25 and abs(cy - 125) < 30  # LFW faces are centred
    le, re, nose, ml, mr = f.landmarks
    assert le[0] < nose[0] < re[0]  # eyes either side of the nose, in image order
    assert ml[0] < mr[0] and max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])
    x1, y1, x2, y2 = f.box
    assert np.all((f.landmarks[:, 0] > x1) & (f.landmarks[:, 0] < x2))
    assert np.all((f.landmarks[:, 1] > y1) & (f.landmarks[:, 1] < y2))


def test_bgr_input_gives_the_same_faces(shared_data: Path, detector) -> None:
    rgb = load_image(shared_data / GROUP)
    a = detector.detect(rgb)
    b = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]), color="bgr")
    assert [f.box for f in a] == [f.box for f in b]


def test_greyscale_input_is_accepted(shared_data: Path, detector) -> None:
    grey = load_image(shared_data / GROUP)[:, :, 1]
    assert len(detector.detect(grey)) == 2


def test_min_face_size_prunes_small_faces(shared_data: Path) -> None:
    image = load_image(shared_data / "detection/dlib_faces/bald_guys.jpg")
    small = MTCNNDetector(DetectorConfig(min_face_size=20)).detect(image)
    large = MTCNNDetector(DetectorConfig(min_face_size=120)).detect(image)
    assert len(large) < len(small)
    assert all(f.size > 0.7 * 120 for f in large)


def test_images_smaller_than_a_pnet_cell_have_no_faces(detector) -> None:
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) == []
    assert pyramid_scales(10, 10, 20, 0.709) == []


def test_random_noise_shape_contract(detector, rng: np.random.Generator) -> None:
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for f in detector.detect(noise):  # usually none; whatever comes must be well-formed
        assert f.landmarks.shape == (5, 2) and 0.0 <= f.score <= 1.0


def test_bad_config_and_bad_input() -> None:
    with pytest.raises(ConfigError, match="min_face_size"):
        DetectorConfig(min_face_size=5)
    with pytest.raises(ConfigError, match="thresholds"):
        DetectorConfig(thresholds=(0.6, 0.7, 1.5))
    with pytest.raises(ConfigError, match="needs a model file"):
        MTCNNDetector(DetectorConfig(backend="litert"))


def test_wrong_input_array_is_an_image_error(detector) -> None:
    with pytest.raises(ImageError):
        detector.detect(np.zeros((0, 0, 3), np.uint8))


def test_corrupt_weight_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "mtcnn.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(ModelError, match="not a readable MTCNN weight file"):
        MTCNNDetector(DetectorConfig(models={"mtcnn": str(bad)}))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"pnet.conv1.w": np.zeros((3, 3, 3, 4), np.float32)})
    with pytest.raises(ModelError, match="wrong names or shapes"):
        MTCNNDetector(DetectorConfig(models={"mtcnn": str(wrong)}))


def test_onnxruntime_backend_finds_the_same_faces(
    shared_data: Path, detector, models_ready
) -> None:
    """The float ONNX export of the same weights, run by ONNX Runtime, is the same detector."""
    ort = MTCNNDetector(DetectorConfig(backend="onnxruntime"))
    for name in ("2008_001009.jpg", "2008_007676.jpg", "bald_guys.jpg"):
        image = load_image(shared_data / "detection/dlib_faces" / name)
        a, b = detector.detect(image), ort.detect(image)
        assert len(a) == len(b)
        for fa, fb in zip(a, b, strict=True):
            np.testing.assert_allclose(fa.box, fb.box, atol=0.05)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=0.05)
