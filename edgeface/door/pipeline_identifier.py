"""Adapter from the recognition stack (:class:`FacePipeline` and a gallery) to :class:`Identifier`.

The face is found, filtered by size, selected, aligned and embedded by
:meth:`FacePipeline.find`, the same path as ``edgeface verify`` and enrollment, so the door
never picks a different face than the rest of the package. The adapter adds what only the
door does: the liveness score of the chosen face, the 1:N decision against the live gallery,
and per-stage timings for ``bench/bench_door.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edgeface.door.identify import Observation
from edgeface.gallery.store import Gallery, ModelRef
from edgeface.recognition.pipeline import FaceDetector, FacePipeline, select_face

if TYPE_CHECKING:
    from edgeface.liveness import LivenessChecker

#: the stages timed per frame: the pipeline's, then the door's own
STAGES = ("detect", "liveness", "align", "embed", "match")


class PipelineIdentifier:
    """``identify(rgb)``: the pipeline's best face -> liveness -> 1:N decision.

    Faces below the pipeline's ``min_face_size`` are never embedded; when every face is
    that small the observation still carries the size and score of the one the selection
    rule would have picked, so the policy can tell "too far" from "nobody". A spoof is still
    embedded, so the audit shows whose face the photo showed.
    """

    def __init__(
        self,
        pipeline: FacePipeline,
        *,
        gallery: Gallery | None = None,
        threshold: float = 1.0,
        check_model: bool = True,
        liveness: LivenessChecker | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.gallery: Gallery | None = None
        self.threshold = float(threshold)
        #: a :class:`~edgeface.liveness.LivenessChecker`, or None (no liveness score)
        self.liveness = liveness
        self.model_ref = ModelRef.of(pipeline.embedder) if check_model else None
        if gallery is not None:
            self.use_gallery(gallery, threshold)
        #: cumulative seconds per stage, and the number of frames each stage ran on
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.counts: dict[str, int] = dict.fromkeys(STAGES, 0)

    @property
    def detector(self) -> FaceDetector:
        """The pipeline's detector (an MTCNN detector, or its tracking wrapper)."""
        return self.pipeline.detector

    def use_gallery(self, gallery: Gallery, threshold: float) -> None:
        """Switch to another gallery generation (and its threshold) between two frames.

        A gallery made with another model raises ModelMismatchError before anything changes.
        """
        if self.model_ref is not None:
            gallery.check_model(self.model_ref)
        gallery.matcher()  # build the search index now, not on the next frame
        self.gallery, self.threshold = gallery, float(threshold)

    def record(self, stage: str, seconds: float) -> None:
        """The pipeline's stage timer (:class:`~edgeface.recognition.pipeline.StageTimer`)."""
        self.timings[stage] += seconds
        self.counts[stage] += 1

    def identify(self, rgb: np.ndarray) -> Observation:
        if self.gallery is None:
            raise RuntimeError("no gallery loaded")  # the daemon never asks without one
        found = self.pipeline.find(rgb, timer=self.record)
        if found.best is None:
            small = select_face(found.detected, rgb.shape, self.pipeline.select)
            if small is None:
                return Observation.no_face(self.threshold)
            return Observation(
                None, None, float("nan"), self.threshold, float(small.score), float(small.size)
            )
        face = found.best.face
        live_score = live_thr = None
        if self.liveness is not None:
            t = time.perf_counter()
            live_score = self.liveness.score(rgb, face)
            live_thr = self.liveness.threshold
            self.record("liveness", time.perf_counter() - t)
        t = time.perf_counter()
        decision = self.gallery.identify(found.best.embedding, self.threshold, k=1)
        self.record("match", time.perf_counter() - t)
        best = decision.best
        known = bool(decision.known and best is not None)
        return Observation(
            identity_id=best.identity_id if known and best is not None else None,
            name=best.name if known and best is not None else None,
            score=float(best.score) if best is not None else float("nan"),
            threshold=self.threshold,
            quality=float(face.score),
            face_size=float(face.size),
            liveness=live_score,
            liveness_threshold=live_thr,
        )
