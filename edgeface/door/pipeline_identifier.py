"""Adapter from the recognition stack (detector, aligner, embedder, gallery) to :class:`Identifier`.

Staged rather than calling ``FacePipeline.best_face`` so that (a) a face below the minimum
size is never aligned or embedded (most frames at a door have a face too far away), and (b)
each stage is timed for ``bench/bench_door.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgeface.door.identify import Observation
from edgeface.recognition.pipeline import select_face


class PipelineIdentifier:
    """``identify(rgb)``: best face -> size gate -> liveness -> align -> embed -> 1:N decision.

    A spoof is still embedded, so the audit shows whose face the photo showed."""

    def __init__(
        self,
        *,
        detector: Any,
        embedder: Any,
        gallery: Any = None,
        threshold: float = 1.0,
        align: Any = None,
        select: str = "largest",
        min_face_size: float = 0.0,
        check_model: bool = True,
        liveness: Any = None,
    ) -> None:
        if align is None:
            from edgeface.aligner import align_face as align
        self.detector = detector
        self.embedder = embedder
        self.gallery = gallery
        self.threshold = float(threshold)
        self.align = align
        self.select = select
        self.min_face_size = float(min_face_size)
        #: a :class:`~edgeface.liveness.LivenessChecker`, or None (no liveness score)
        self.liveness = liveness
        self.model_ref: Any = None
        if check_model:
            from edgeface.gallery.store import ModelRef

            self.model_ref = ModelRef.of(embedder)
        if gallery is not None:
            self.use_gallery(gallery, threshold)
        #: cumulative seconds per stage, and the number of frames each stage ran on
        self.timings: dict[str, float] = {
            "detect": 0.0, "liveness": 0.0, "align": 0.0, "embed": 0.0, "match": 0.0,
        }  # fmt: skip
        self.counts: dict[str, int] = dict.fromkeys(self.timings, 0)

    def use_gallery(self, gallery: Any, threshold: float) -> None:
        """Switch to another gallery generation (and its threshold) between two frames.

        A gallery made with another model raises ModelMismatchError before anything changes.
        """
        if self.model_ref is not None:
            gallery.check_model(self.model_ref)
        gallery.matcher()  # build the search index now, not on the next frame
        self.gallery, self.threshold = gallery, float(threshold)

    def _timed(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.timings[stage] += t1 - t0
        self.counts[stage] += 1
        return t1

    def identify(self, rgb: np.ndarray) -> Observation:
        if self.gallery is None:
            raise RuntimeError("no gallery loaded")  # the daemon never asks without one
        t = time.perf_counter()
        faces = self.detector.detect(rgb)
        t = self._timed("detect", t)
        if not faces:
            return Observation.no_face(self.threshold)
        face = select_face(faces, rgb.shape, self.select)  # type: ignore[arg-type]
        assert face is not None
        if face.size < self.min_face_size:
            return Observation(
                None, None, float("nan"), self.threshold, float(face.score), float(face.size)
            )
        live_score = live_thr = None
        if self.liveness is not None:
            live_score = self.liveness.score(rgb, face)
            live_thr = self.liveness.threshold
            t = self._timed("liveness", t)
        crop = self.align(rgb, face.landmarks, size=112).crop
        t = self._timed("align", t)
        emb = self.embedder.embed(crop[None])[0]
        t = self._timed("embed", t)
        decision = self.gallery.identify(emb, self.threshold, k=1)
        self._timed("match", t)
        best = decision.best
        score = float(best.score) if best is not None else float("nan")
        known = bool(decision.known and best is not None)
        return Observation(
            identity_id=best.identity_id if known else None,
            name=best.name if known else None,
            score=score,
            threshold=self.threshold,
            quality=float(face.score),
            face_size=float(face.size),
            liveness=live_score,
            liveness_threshold=live_thr,
        )
