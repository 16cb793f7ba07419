"""Similarity transform from five landmarks to the standard template, and the warp.

The embedding model was trained on faces warped this way, so recognition accuracy depends on
doing it the same way: least-squares similarity (rotation, uniform scale, translation; no
shear), the ArcFace reference points, bilinear warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.errors import ImageError

#: ArcFace / insightface reference points for a 112x112 crop: eyes, nose tip, mouth corners
#: as seen in the image (left to right).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class AlignedFace:
    """The aligned crop (RGB uint8 ``size`` x ``size`` x 3) and the 2x3 image->crop matrix."""

    crop: np.ndarray
    matrix: np.ndarray


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``M`` (2x3), ``dst ~= M @ [src; 1]`` (Umeyama, no reflection)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("landmarks are degenerate (all points coincide)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 112,
    template: np.ndarray = ARCFACE_TEMPLATE_112,
) -> AlignedFace:
    """Warp the face with ``landmarks`` (5x2, image order) onto ``template`` at ``size`` px.

    ``template`` is given for 112 px and scaled for other sizes.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ImageError(f"alignment needs 5 finite (x, y) landmarks, got shape {pts.shape}")
    try:
        matrix = estimate_similarity(pts, template * (size / 112.0))
    except ValueError as exc:
        raise ImageError(f"cannot align face: {exc}") from exc
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return AlignedFace(crop=crop, matrix=matrix)
