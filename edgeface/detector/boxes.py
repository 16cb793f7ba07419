"""Box arithmetic for the cascade: NMS, regression, squaring, padded crops.

Boxes are float arrays ``(N, 4)`` of ``x1, y1, x2, y2`` in image pixels. Regression and
landmarks use the original MTCNN width ``x2 - x1 + 1`` (the nets were trained with inclusive
pixel boxes); overlaps for NMS use continuous areas, as the reference implementation does.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

NmsMode = Literal["union", "min"]


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    mode: NmsMode = "union",
    *,
    greedy: bool = False,
) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, best score first.

    ``mode="union"`` is IoU; ``"min"`` divides the overlap by the smaller box, which after
    O-Net removes a small box nested inside a larger face box.

    By default a box is dropped when it overlaps *any* higher-scored box, suppressed or not
    (as the reference MTCNN implementation does): that needs no sequential loop, so it is
    computed in blocks of whole-matrix operations. ``greedy=True`` is the textbook variant in
    which only kept boxes suppress; it keeps a few more boxes in crowds.
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]
    if greedy:
        return order[_nms_greedy(ranked, threshold, mode)]
    keep = np.ones(len(ranked), dtype=bool)
    idx = np.arange(len(ranked))
    for start in range(0, len(ranked), _BLOCK):
        cols = idx[start : start + _BLOCK]
        rows = idx[: cols[-1]]  # only higher-scored boxes can suppress
        if rows.size == 0:
            continue
        over = _overlap(ranked, rows[:, None], cols[None, :], mode) > threshold
        over &= rows[:, None] < cols[None, :]
        keep[cols] = ~over.any(axis=0)
    return order[keep]


#: columns per block of the overlap matrix: bounds memory to ~N x 128 per step, and smaller
#: blocks skip more of the lower triangle (only higher-scored rows are computed per block)
_BLOCK = 128


def _overlap(boxes: np.ndarray, i: np.ndarray | int, rest: np.ndarray, mode: NmsMode) -> np.ndarray:
    """Overlap of continuous boxes (no +1: after regression these are not pixel indices)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1) * (y2 - y1)
    w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
    h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
    inter = w * h
    if mode == "min":
        return inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9)
    return inter / np.maximum(area[i] + area[rest] - inter, 1e-9)


def _nms_greedy(ranked: np.ndarray, threshold: float, mode: NmsMode) -> np.ndarray:
    keep: list[int] = []
    order = np.arange(len(ranked))
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[_overlap(ranked, i, rest, mode) <= threshold]
    return np.asarray(keep, dtype=np.intp)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression (offsets in units of the box size)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (R-Net and O-Net take square crops)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def crop_patches(
    image: np.ndarray,
    boxes: np.ndarray,
    size: int,
    *,
    origin: tuple[int, int] = (0, 0),
    frame_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Sample each box of ``image`` onto a ``size`` x ``size`` grid (bilinear, corner to corner).

    Boxes may leave the image: outside pixels read as 0, which in the normalized MTCNN input
    is mid-grey, so a face cut by the frame edge keeps its scale and position in the crop.
    Coordinates are scaled by ``(side - 1) / side`` as TensorFlow's ``crop_and_resize`` does
    with boxes normalized by the image size. That is a sub-pixel detail, but O-Net's landmarks
    move by a few percent with it, and keeping it makes our cascade agree with the reference
    implementation whose LFW accuracy we quote (tests/test_mtcnn_reference.py).
    ``image`` may be a window of a larger frame (``frame_shape`` = its height and width, the
    window's top-left pixel at ``origin`` = x, y): boxes are then in frame coordinates and
    sample exactly as on the whole frame, provided the window holds every frame pixel the
    boxes touch (:func:`window_around`). Tracking uses that to normalize a small region only.
    Returns ``(N, size, size, C)`` float32 patches.
    """
    channels = image.shape[2]
    h, w = frame_shape or image.shape[:2]
    n = len(boxes)
    if n == 0:
        return np.empty((0, size, size, channels), np.float32)
    # one cv2.remap over all boxes stacked vertically (one call, not one warpAffine per box)
    sampled = boxes.astype(np.float64) * np.array([(w - 1) / w, (h - 1) / h] * 2)
    sampled -= np.array([origin[0], origin[1]] * 2, np.float64)
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    xs = sampled[:, 0:1] + (sampled[:, 2:3] - sampled[:, 0:1]) * steps  # (N, size)
    ys = sampled[:, 1:2] + (sampled[:, 3:4] - sampled[:, 1:2]) * steps
    map_x = np.broadcast_to(xs[:, None, :], (n, size, size)).astype(np.float32)
    map_y = np.broadcast_to(ys[:, :, None], (n, size, size)).astype(np.float32)
    out = cv2.remap(
        image,
        map_x.reshape(n * size, size),
        map_y.reshape(n * size, size),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out.reshape(n, size, size, channels)


def window_around(boxes: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1``: the part of a frame that :func:`crop_patches` reads for ``boxes``
    (their bounding box, one pixel more on each side for bilinear sampling, clipped)."""
    h, w = frame_shape[:2]
    x0 = int(np.clip(np.floor(boxes[:, 0].min()) - 1, 0, w))
    y0 = int(np.clip(np.floor(boxes[:, 1].min()) - 1, 0, h))
    x1 = int(np.clip(np.ceil(boxes[:, 2].max()) + 2, x0, w))
    y1 = int(np.clip(np.ceil(boxes[:, 3].max()) + 2, y0, h))
    return x0, y0, x1, y1


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Continuous IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4), ``x1 y1 x2 y2``.

    Used by evaluation, tracking and tests; degenerate (zero-area) pairs score 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
