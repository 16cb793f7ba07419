"""The context crop each liveness network was trained on, cut around *our* face box.

MiniFASNet looks at the face *and* its surroundings (paper edges, a phone bezel, moiré), so
each network gets the face box enlarged by its own scale (2.7x, 4.0x) about the box centre,
keeping the box's aspect ratio. Upstream's rules, which the weights expect:

* the scale shrinks so the enlarged box fits inside the frame (never larger than the frame);
* a box that sticks out is **shifted** back inside, never padded (padding would add a
  border the networks never saw in training, which looks like a print's edge);
* the corners are truncated to integers and the patch is inclusive of both.

Our MTCNN box is not upstream's box: upstream cropped around the box of its own RetinaFace
detector, which is close to square, while MTCNN's is usually taller than wide (forehead to
chin, cheek to cheek). Since every crop scales the box, a narrow box gives a narrow crop with
less of the surroundings the networks look at. :func:`square_box` (side = the longer side,
same centre) restores that; measured on the development halves with the float pair
(docs/liveness.md): NUAA live faces rejected at a 0.4 threshold 5.1 % with the raw MTCNN box,
0.0 % with the square box; CelebA-Spoof slice APCER 21 % either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.errors import ImageError


@dataclass(frozen=True)
class CropBox:
    """Inclusive integer pixel bounds of a crop: ``image[top : bottom + 1, left : right + 1]``."""

    left: int
    top: int
    right: int
    bottom: int

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.bottom + 1, self.left : self.right + 1]


def context_box(
    box: tuple[float, float, float, float], frame_wh: tuple[int, int], scale: float
) -> CropBox:
    """Upstream's enlarged, shifted crop of ``box`` (x1, y1, x2, y2) in a W x H frame."""
    width, height = frame_wh
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0 or width < 2 or height < 2:
        raise ImageError(f"cannot crop a liveness patch for box {box} in a {width}x{height} frame")
    s = min((height - 1) / h, (width - 1) / w, scale)
    cx, cy = x1 + w / 2.0, y1 + h / 2.0
    half_w, half_h = w * s / 2.0, h * s / 2.0
    left, right, top, bottom = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    if left < 0:
        right -= left
        left = 0.0
    if top < 0:
        bottom -= top
        top = 0.0
    if right > width - 1:
        left -= right - (width - 1)
        right = width - 1.0
    if bottom > height - 1:
        top -= bottom - (height - 1)
        bottom = height - 1.0
    return CropBox(int(left), int(top), int(right), int(bottom))


def square_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The square of side max(width, height) with the same centre (see the module docstring)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1) / 2.0
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


def context_patch(
    image: np.ndarray, box: tuple[float, float, float, float], scale: float, size: int
) -> np.ndarray:
    """The ``size`` x ``size`` patch of our detector's ``box``: squared, enlarged by
    ``scale`` with upstream's rules, resized bilinearly (aspect ratio not kept, as upstream)."""
    square = square_box(box)
    crop = context_box(square, (image.shape[1], image.shape[0]), scale).cut(image)
    if crop.size == 0:
        raise ImageError(f"empty liveness patch for box {box}")
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
