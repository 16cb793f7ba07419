"""MTCNN's input convention: uint8 RGB -> (x - 127.5) / 128, float32 in [-1, 1)."""

from __future__ import annotations

import cv2
import numpy as np

MEAN = 127.5
SCALE = 0.0078125  # 1 / 128

#: the normalized value of every uint8: one table lookup (cv2.LUT, vectorized) instead of
#: three array passes
_TABLE = ((np.arange(256, dtype=np.float32) - MEAN) * SCALE).astype(np.float32)


def normalize(image_rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1), the MTCNN input convention (into ``out`` if given)."""
    if out is None:
        return cv2.LUT(image_rgb, _TABLE)
    result = cv2.LUT(image_rgb, _TABLE, dst=out)
    if result is not out:  # OpenCV reallocates a dst of the wrong shape or type
        raise ValueError(f"out must be float32 {image_rgb.shape}, got {out.dtype} {out.shape}")
    return out
