"""The three cascade stages, each: preprocess -> session.run -> postprocess.

A stage owns its network's input size and the meaning of its outputs; it does not know
whether the session is NumPy, ONNX Runtime or LiteRT (see :mod:`edgeface.backends`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeface.backends.base import InferenceSession
from edgeface.detector import boxes as B
from edgeface.detector.pyramid import AreaPyramid

#: P-Net sees 12x12 windows with stride 2 (one pooling layer)
PNET_CELL, PNET_STRIDE = 12, 2


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
    """Feeds NHWC batches to a session in its layout and batch size."""

    def __init__(self, session: InferenceSession, max_batch: int = 256) -> None:
        self.session = session
        fixed = session.info.fixed_batch
        self.max_batch = fixed if fixed else max_batch
        #: called with every NHWC float32 batch before it goes to the session (see
        #: ``MTCNNDetector.recording``); None: nothing is kept
        self.observer: Callable[[np.ndarray], None] | None = None

    def _run(self, chunk: np.ndarray) -> list[np.ndarray]:
        if self.observer is not None:
            self.observer(chunk)
        if self.session.info.input_layout == "NCHW":
            chunk = chunk.transpose(0, 3, 1, 2)
        return self.session.run(chunk)


class CropStage(Stage, ABC):
    """A network on square crops of the candidates (R-Net, O-Net)."""

    #: the network's input side in pixels
    size: int

    def run_on_crops(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        *,
        origin: tuple[int, int] = (0, 0),
        frame_shape: tuple[int, int] | None = None,
    ) -> list[np.ndarray]:
        """Network outputs for the crop of every box (at least one), in box order; ``image``
        may be a window of the frame (see :func:`edgeface.detector.boxes.crop_patches`)."""
        window = {"origin": origin, "frame_shape": frame_shape}
        parts = [
            self._run(
                B.crop_patches(image, boxes[start : start + self.max_batch], self.size, **window)
            )
            for start in range(0, len(boxes), self.max_batch)
        ]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]

    @abstractmethod
    def finish(
        self, cand: Candidates, outputs: list[np.ndarray], threshold: float, nms: float
    ) -> Candidates:
        """The candidates that pass this net, refined, from the net's ``outputs`` on their
        crops (:meth:`run_on_crops` here or in a helper, see :mod:`edgeface.detector.helper`)."""


class ProposalStage(Stage):
    """P-Net over an image pyramid: dense, cheap, many candidates."""

    def levels(
        self,
        image_u8: np.ndarray,
        normalized: np.ndarray,
        scales: list[float],
        threshold: float,
        nms_scale: float,
    ) -> list[Candidates]:
        """Each scale's candidates, after that scale's own NMS."""
        pyramid = AreaPyramid(image_u8, normalized)
        h, w = image_u8.shape[:2]
        found = []
        for scale in scales:
            resized = pyramid.level(int(w * scale), int(h * scale))
            prob, offsets = self._run(resized[None])
            cand = self._decode(prob[0], offsets[0], scale, threshold)
            found.append(cand.take(B.nms(cand.boxes, cand.scores, nms_scale, "union")))
        return found

    @staticmethod
    def merge(levels: list[Candidates], nms_all: float) -> Candidates:
        """All scales' candidates (in pyramid order), NMS across scales, squared."""
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


class RefineStage(CropStage):
    """R-Net on 24x24 crops: rejects most P-Net proposals and tightens the rest."""

    size = 24

    def finish(
        self, cand: Candidates, outputs: list[np.ndarray], threshold: float, nms: float
    ) -> Candidates:
        prob, offsets = outputs
        keep = prob > threshold
        cand = Candidates(B.regress(cand.boxes[keep], offsets[keep]), prob[keep])
        cand = cand.take(B.nms(cand.boxes, cand.scores, nms, "union"))
        return Candidates(B.square(cand.boxes), cand.scores)


class OutputStage(CropStage):
    """O-Net on 48x48 crops: final score, box and the five landmarks."""

    size = 48

    def finish(
        self, cand: Candidates, outputs: list[np.ndarray], threshold: float, nms: float
    ) -> Candidates:
        keep = outputs[0] > threshold
        boxes = cand.boxes[keep]
        prob, offsets, points = (out[keep] for out in outputs)
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=2)
        final = Candidates(B.regress(boxes, offsets), prob, landmarks=landmarks)
        return final.take(B.nms(final.boxes, final.scores, nms, "min"))


def cascade_stages(
    open_net: Callable[[str], InferenceSession],
) -> tuple[ProposalStage, RefineStage, OutputStage]:
    """P-Net, R-Net and O-Net stages over the sessions ``open_net("pnet" | "rnet" | "onet")``.

    One construction for the detector and its helper processes, so the two cannot drift.
    """
    return (
        ProposalStage(open_net("pnet")),
        RefineStage(open_net("rnet")),
        OutputStage(open_net("onet")),
    )
