"""The three cascade stages, each: preprocess -> session.run -> postprocess.

A stage owns its network's input size and the meaning of its outputs; it does not know
whether the session is NumPy, ONNX Runtime or LiteRT (see :mod:`edgeface.backends`).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.backends.base import InferenceSession
from edgeface.detector import boxes as B

#: P-Net sees 12x12 windows with stride 2 (one pooling layer)
PNET_CELL, PNET_STRIDE = 12, 2


#: (x - 127.5) / 128 for every uint8 value: one table lookup (cv2.LUT, vectorized and
#: threaded) instead of three array passes
_NORMALIZE = ((np.arange(256, dtype=np.float32) - 127.5) * 0.0078125).astype(np.float32)


def normalize(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [-1, 1), the MTCNN input convention."""
    return cv2.LUT(image_rgb, _NORMALIZE)


@dataclass
class Candidates:
    """Boxes (N,4) and scores (N,); after O-Net also the landmarks (N,5,2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32))

    def take(self, idx: np.ndarray) -> Candidates:
        lm = None if self.landmarks is None else self.landmarks[idx]
        return Candidates(self.boxes[idx], self.scores[idx], lm)

    def __len__(self) -> int:
        return len(self.scores)


class Stage:
    """Feeds NHWC batches to a session in its layout and batch size.

    With an ``executor`` (and a thread-safe session) a batch is split across its workers:
    NumPy and ONNX Runtime release the GIL in the heavy calls, so two cores do twice the
    work. Results are concatenated in order, so they are identical to a serial run.
    """

    #: below this many crops per worker, splitting costs more than it saves
    min_split = 8

    def __init__(
        self,
        session: InferenceSession,
        max_batch: int = 256,
        executor: Executor | None = None,
        workers: int = 1,
    ) -> None:
        self.session = session
        fixed = session.info.fixed_batch
        self.max_batch = fixed if fixed else max_batch
        self.executor = executor if session.info.thread_safe else None
        self.workers = workers if self.executor is not None else 1

    def _run(self, chunk: np.ndarray) -> list[np.ndarray]:
        if self.session.info.input_layout == "NCHW":
            chunk = chunk.transpose(0, 3, 1, 2)
        return self.session.run(chunk)

    def run_batched(self, batch_nhwc: np.ndarray) -> list[np.ndarray]:
        n = len(batch_nhwc)
        size = self.max_batch
        if self.workers > 1 and n >= 2 * self.min_split:
            size = min(size, -(-n // self.workers))
        chunks = [batch_nhwc[i : i + size] for i in range(0, n, size)]
        if self.executor is not None and len(chunks) > 1:
            parts = list(self.executor.map(self._run, chunks))
        else:
            parts = [self._run(c) for c in chunks]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]


class ProposalStage(Stage):
    """P-Net over an image pyramid: dense, cheap, many candidates."""

    def __call__(
        self,
        image: np.ndarray,
        scales: list[float],
        threshold: float,
        nms_scale: float,
        nms_all: float,
    ) -> Candidates:
        def level(scale: float) -> Candidates:
            h, w = image.shape[:2]
            resized = cv2.resize(
                image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA
            )
            prob, offsets = self._run(resized[None])
            cand = self._decode(prob[0], offsets[0], scale, threshold)
            return cand.take(B.nms(cand.boxes, cand.scores, nms_scale, "union"))

        # the largest level costs about as much as all others together: two workers balance
        levels = self.executor.map(level, scales) if self.executor else map(level, scales)
        found = [c for c in levels if len(c)]
        if not found:
            return Candidates.empty()
        merged = Candidates(
            np.concatenate([c.boxes for c in found]), np.concatenate([c.scores for c in found])
        )
        merged = merged.take(B.nms(merged.boxes, merged.scores, nms_all, "union"))
        return Candidates(B.square(merged.boxes), merged.scores)

    @staticmethod
    def _decode(
        prob: np.ndarray, offsets: np.ndarray, scale: float, threshold: float
    ) -> Candidates:
        rows, cols = np.nonzero(prob > threshold)
        if rows.size == 0:
            return Candidates.empty()
        # cell -> its 12x12 window in the pyramid level (the 1-based geometry the net was
        # trained on), regressed, then mapped back to the original image
        x1 = PNET_STRIDE * cols + 1.0
        y1 = PNET_STRIDE * rows + 1.0
        windows = np.stack([x1, y1, x1 + PNET_CELL - 1, y1 + PNET_CELL - 1], axis=1)
        reg = offsets[rows, cols] * (PNET_CELL - 1)
        return Candidates((windows + reg) / scale, prob[rows, cols])


class RefineStage(Stage):
    """R-Net on 24x24 crops: rejects most P-Net proposals and tightens the rest."""

    size = 24

    def __call__(
        self, image: np.ndarray, cand: Candidates, threshold: float, nms: float
    ) -> Candidates:
        if not len(cand):
            return cand
        prob, offsets = self.run_batched(B.crop_patches(image, cand.boxes, self.size))
        keep = prob > threshold
        cand = Candidates(B.regress(cand.boxes[keep], offsets[keep]), prob[keep])
        cand = cand.take(B.nms(cand.boxes, cand.scores, nms, "union"))
        return Candidates(B.square(cand.boxes), cand.scores)


class OutputStage(Stage):
    """O-Net on 48x48 crops: final score, box and the five landmarks."""

    size = 48

    def __call__(
        self, image: np.ndarray, cand: Candidates, threshold: float, nms: float
    ) -> Candidates:
        if not len(cand):
            return cand
        prob, offsets, points = self.run_batched(B.crop_patches(image, cand.boxes, self.size))
        keep = prob > threshold
        boxes, prob, offsets, points = cand.boxes[keep], prob[keep], offsets[keep], points[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2)
        final = Candidates(B.regress(boxes, offsets), prob, landmarks=landmarks)
        return final.take(B.nms(final.boxes, final.scores, nms, "min"))
