"""The P-Net image pyramid: area (box-filter) downscaling of the normalized frame.

MTCNN's reference area-resizes the normalized frame at every scale (``tf.image.resize``
with AREA, which ``cv2.INTER_AREA`` matches). OpenCV's area resize at a non-integer ratio
reads the whole frame for every level, so each level of a 640x480 frame costs the same
~0.7 ms, the 17x12 one included.

An area average is also a difference of the image's integral, and the integral of a pixel
grid is bilinear inside each pixel, so sampling it at fractional box edges with linear
interpolation is exact. The integral of the uint8 frame is exact in int32 (one fast
``cv2.integral``); a level then reads only its own grid of box corners (flat ``np.take``,
indices cached per frame and level size: a camera's frames never change size), so it
costs in proportion to its own size. That is cheaper than OpenCV for the small levels and
dearer for the large ones, so each level takes the cheaper way; both agree to ~2e-7.
Normalizing after averaging is the same affine map as before it.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edgeface.detector.normalize import MEAN, SCALE


class AreaPyramid:
    """Normalized, area-downscaled copies of one frame, at any sizes."""

    #: a level whose output has fewer pixels than this share of the frame's comes from the
    #: integral image (measured break-even on x86: ~85 ns per output pixel for the integral
    #: against ~2.3 ns per *input* pixel for OpenCV's area resize)
    INTEGRAL_BELOW = 0.03

    def __init__(self, image_u8: np.ndarray, normalized: np.ndarray) -> None:
        """``image_u8``: the uint8 frame; ``normalized``: the same frame through
        :func:`~edgeface.detector.normalize.normalize` (needed by the later stages anyway)."""
        if image_u8.dtype != np.uint8 or image_u8.ndim != 3:
            raise ValueError(f"expected HxWxC uint8, got {image_u8.dtype} {image_u8.shape}")
        if normalized.shape != image_u8.shape:
            raise ValueError(f"normalized frame {normalized.shape} != frame {image_u8.shape}")
        self.height, self.width, self.channels = image_u8.shape
        self._image = image_u8
        self._normalized = normalized
        self._flat: np.ndarray | None = None

    def level(self, width: int, height: int) -> np.ndarray:
        """The frame area-resized to ``width`` x ``height``, normalized, float32 (H, W, C)."""
        if not (0 < width <= self.width and 0 < height <= self.height):
            raise ValueError(
                f"level {width}x{height} must be within 1..{self.width} x 1..{self.height}"
            )
        if width * height >= self.INTEGRAL_BELOW * self.width * self.height:
            level = cv2.resize(self._normalized, (width, height), interpolation=cv2.INTER_AREA)
            return level.reshape(height, width, self.channels)
        return self._from_integral(width, height)

    def _integral(self) -> np.ndarray:
        if self._flat is None:  # once per frame, for all its small levels
            self._flat = cv2.integral(self._image, sdepth=cv2.CV_32S).reshape(-1)
        return self._flat

    def _from_integral(self, width: int, height: int) -> np.ndarray:
        plan = _corner_plan(self.height, self.width, self.channels, height, width)
        take = self._integral().take
        v00 = take(plan.index).astype(np.float64)
        v01 = take(plan.index + plan.next_col)
        v10 = take(plan.index + plan.next_row)
        v11 = take(plan.index + plan.next_row + plan.next_col)
        # bilinear interpolation of the integral at every (row edge, column edge)
        top = v00 + plan.col_frac * (v01 - v00)
        bottom = v10 + plan.col_frac * (v11 - v10)
        at = top + plan.row_frac * (bottom - top)
        box_sums = at[1:, 1:] - at[1:, :-1] - at[:-1, 1:] + at[:-1, :-1]
        # mean over the box, then the MTCNN normalization (x - 127.5) / 128, in one affine step
        box_sums *= SCALE / plan.box_area
        box_sums -= MEAN * SCALE
        return box_sums.astype(np.float32)


class _Plan:
    """Flat integral-image indices and weights of one level's box corners."""

    def __init__(self, h: int, w: int, c: int, out_h: int, out_w: int) -> None:
        rows, row_frac = _edges(h, out_h)
        cols, col_frac = _edges(w, out_w)
        stride = (w + 1) * c
        corner = rows[:, None] * stride + cols[None, :] * c
        self.index = corner[:, :, None] + np.arange(c)  # (out_h + 1, out_w + 1, c)
        self.next_col, self.next_row = c, stride
        self.row_frac = row_frac[:, None, None]
        self.col_frac = col_frac[None, :, None]
        self.box_area = (h / out_h) * (w / out_w)


@lru_cache(maxsize=64)
def _corner_plan(h: int, w: int, c: int, out_h: int, out_w: int) -> _Plan:
    return _Plan(h, w, c, out_h, out_w)


def _edges(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Box edges ``k * n_in / n_out`` (k = 0..n_out) as integer cell + fraction within it."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    edges[-1] = n_in  # exactly the end, whatever the rounding of the ratio
    cells = np.minimum(edges.astype(np.intp), n_in - 1)
    return cells, edges - cells
