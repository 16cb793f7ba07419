"""Alignment: exact recovery of a known similarity, and stable crops of real faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.aligner import ARCFACE_TEMPLATE_112, align_face, estimate_similarity
from edgeface.errors import ImageError
from edgeface.imaging import load_image


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


@pytest.mark.parametrize(
    ("scale", "deg", "tx", "ty"), [(1.0, 0, 0, 0), (0.37, 23, 140, -12), (2.5, -170, -3, 88)]
)
def test_known_similarity_is_recovered_exactly(
    scale: float, deg: float, tx: float, ty: float
) -> None:
    m = _similarity(scale, deg, tx, ty)
    src = np.array([[10, 20], [80, 25], [45, 60], [20, 90], [75, 95]], float)
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(estimate_similarity(src, dst), m, atol=1e-9)


def test_mirrored_points_give_a_rotation_not_a_reflection() -> None:
    src = ARCFACE_TEMPLATE_112.copy()
    dst = src.copy()
    dst[:, 0] = 112 - dst[:, 0]  # mirror image: the best *similarity* cannot reflect
    m = estimate_similarity(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_or_malformed_landmarks_raise_image_error() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ImageError, match="degenerate"):
        align_face(img, np.ones((5, 2)))
    with pytest.raises(ImageError, match="5 finite"):
        align_face(img, np.ones((4, 2)))
    with pytest.raises(ImageError, match="5 finite"):
        align_face(img, np.full((5, 2), np.nan))


def test_same_face_at_other_scales_and_rotations_aligns_to_the_same_crop(
    shared_data: Path, detector
) -> None:
    path = shared_data / "lfw/images/Tony_Blair/Tony_Blair_0001.jpg"
    image = load_image(path)
    base = align_face(image, detector.detect(image)[0].landmarks).crop.astype(np.float32)
    h, w = image.shape[:2]
    for scale, angle in [(0.6, 0.0), (1.7, 0.0), (1.0, 20.0), (1.3, -25.0)]:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        size = (int(w * max(scale, 1)), int(h * max(scale, 1)))
        warped = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR)
        faces = detector.detect(warped)
        assert faces, f"no face after scale {scale} rotation {angle}"
        crop = align_face(warped, faces[0].landmarks).crop.astype(np.float32)
        # compare the central face region (borders differ where the warp left the photo)
        a, b = base[16:96, 16:96].ravel(), crop[16:96, 16:96].ravel()
        corr = np.corrcoef(a, b)[0, 1]
        assert corr > 0.9, f"scale {scale} rotation {angle}: crop correlation {corr:.3f}"
