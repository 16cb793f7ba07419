"""The recognition pipeline: detect, filter by size, pick, align, embed, compare.

This is the one recognition path: the CLI, enrollment, the door
(:class:`edgeface.door.pipeline_identifier.PipelineIdentifier`) and the kiosk all go through
:class:`FacePipeline`, so a face chosen in one place is the face chosen in every other.

Rules a caller can rely on:
- Size first, then selection: faces below ``min_face_size`` are dropped, and only then does
  ``best_face`` pick the largest (default) or the most central one of the rest, by
  ``PipelineConfig.select`` (:func:`select_face`). A small central face therefore never hides
  a big enough one beside it. ``analyze`` returns every big enough face, largest first.
- No face: ``best_face`` returns ``None``; ``verify`` and ``identify`` return a result whose
  ``no_face`` says which image had none. Nothing raises for a face-less photo.
- Faces whose box side is below ``min_face_size`` (default 24 px) are ignored: MTCNN does find
  faces smaller than its pyramid minimum (its regression shrinks boxes to ~9 px), but a crop
  upsampled from so few pixels gives an embedding that means nothing.
- 1:N ranking is :class:`edgeface.gallery.matching.Matcher`'s; ``identify`` builds one.
- An optional :class:`StageTimer` receives the seconds of each stage (``detect``, ``align``,
  ``embed``) of :meth:`FacePipeline.find`; the door's benchmark reads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from edgeface.aligner import align_face
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.errors import ConfigError
from edgeface.face_sizes import PIPELINE_MIN_FACE
from edgeface.recognition.calibration import (
    DEFAULT_FAR,
    Calibration,
    calibration_beside,
    load_calibration,
)
from edgeface.types import Face

Selection = Literal["largest", "central"]


class FaceDetector(Protocol):
    """What the pipeline needs from a detector: :class:`MTCNNDetector`, or the door's
    :class:`~edgeface.detector.tracking.TrackingDetector` wrapped around one."""

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def close(self) -> None: ...


class FaceEmbedder(Protocol):
    """What the pipeline (and a gallery's model binding) needs from an embedder."""

    model_id: str
    model_sha256: str
    flip: bool

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


class StageTimer(Protocol):
    """Told the wall seconds of each pipeline stage as it ends (``detect``, ``align``,
    ``embed``); a stage that did not run is not reported."""

    def __call__(self, stage: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    select: Selection = "largest"
    #: path of a calibration file; default: the one shipped for the embedding model
    calibration: str | None = None
    #: smallest face (box side, px) that is recognized; smaller ones count as no face
    min_face_size: float = PIPELINE_MIN_FACE


@dataclass(frozen=True)
class FaceResult:
    face: Face
    crop: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class VerifyResult:
    """1:1 decision. ``score`` is the cosine similarity; None when a face was missing."""

    score: float | None
    same: bool
    threshold: float
    far: float
    no_face: tuple[bool, bool] = (False, False)

    def to_dict(self) -> dict[str, object]:
        return {
            "score": None if self.score is None else round(self.score, 5),
            "same": self.same,
            "threshold": round(self.threshold, 5),
            "far": self.far,
            "no_face": list(self.no_face),
        }


@dataclass(frozen=True)
class IdentifyResult:
    """1:N decision: ``label`` is None for "unknown" (or no face); ``top`` best first."""

    label: str | None
    score: float | None
    threshold: float
    top: list[tuple[str, float]]
    face: FaceResult | None

    @property
    def no_face(self) -> bool:
        return self.face is None


def select_face(
    faces: Sequence[Face],
    image_shape: tuple[int, ...],
    how: Selection,
    *,
    min_size: float = 0.0,
) -> Face | None:
    """The face a decision is about: of the faces at least ``min_size`` px (box side), the
    largest or the one nearest the image centre; None when there is none.

    Size first, then selection, everywhere (pipeline, door, enrollment, CLI): selecting first
    would let a small central face hide a big enough face beside it.
    """
    big = [f for f in faces if f.size >= min_size]
    if not big:
        return None
    if how == "largest":
        return max(big, key=lambda f: f.area)
    if how == "central":
        cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
        return min(big, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
    raise ConfigError(f"unknown face selection '{how}' (use 'largest' or 'central')")


@dataclass(frozen=True)
class Found:
    """One image through :meth:`FacePipeline.find`: every face the detector reported
    (``detected``, before the size filter) and the chosen face embedded (``best``, None
    when no face was big enough)."""

    detected: list[Face]
    best: FaceResult | None


class _Stopwatch:
    """Reports the seconds since the previous lap to a :class:`StageTimer` (if any)."""

    def __init__(self, timer: StageTimer | None) -> None:
        self.timer = timer
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timer is not None:
            now = time.perf_counter()
            self.timer(stage, now - self.t)
            self.t = now


class FacePipeline:
    """Detector + aligner + embedder + calibrated thresholds."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        calibration: Calibration | None = None,
        *,
        select: Selection = "largest",
        min_face_size: float = PIPELINE_MIN_FACE,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.select = select
        self.min_face_size = min_face_size
        if calibration is not None and calibration.embedding_space != embedder.model_id:
            raise ConfigError(
                f"calibration is for embedding model '{calibration.embedding_space}', "
                f"the embedder is '{embedder.model_id}'"
            )
        if calibration is not None and calibration.flip != embedder.flip:
            raise ConfigError(
                f"calibration was made with flip={calibration.flip}, the embedder runs with "
                f"flip={embedder.flip}; use the matching calibration file"
            )
        self.calibration = calibration

    @classmethod
    def from_config(cls, config: PipelineConfig | None = None) -> FacePipeline:
        cfg = config or PipelineConfig()
        embedder = Embedder.from_config(cfg.embedder)
        path = None if cfg.calibration is None else Path(cfg.calibration)
        if path is None and cfg.embedder.path is not None:
            beside = calibration_beside(Path(cfg.embedder.path), embedder.flip)
            path = beside if beside.is_file() else None
        try:
            calibration = load_calibration(
                path, embedding_space=embedder.model_id, flip=embedder.flip
            )
        except ConfigError:
            if cfg.calibration is not None:
                raise
            calibration = None
        if calibration is not None and calibration.model_sha256 != embedder.model_sha256:
            # thresholds of another file (e.g. the float model's for an INT8 build) would set
            # an unmeasured false accept rate: refuse rather than guess
            if cfg.calibration is not None:
                raise ConfigError(
                    f"{cfg.calibration}: calibration is for model sha256 "
                    f"{calibration.model_sha256[:12]}, the embedder is "
                    f"{embedder.model_sha256[:12]}"
                )
            calibration = None
        return cls(
            MTCNNDetector(cfg.detector),
            embedder,
            calibration,
            select=cfg.select,
            min_face_size=cfg.min_face_size,
        )

    @classmethod
    def default(cls) -> FacePipeline:
        return cls.from_config()

    def threshold(self, far: float = DEFAULT_FAR) -> float:
        if self.calibration is None:
            raise ConfigError(
                f"no calibration for embedding model '{self.embedder.model_id}' with sha256 "
                f"{self.embedder.model_sha256[:12]}; run: edgeface eval lfw --model FILE "
                "--write-calibration FILE.calibration.json"
            )
        return self.calibration.threshold(far)

    def with_detector(self, detector: FaceDetector) -> FacePipeline:
        """The same pipeline with another detector (the door's tracking wrapper)."""
        return FacePipeline(
            detector,
            self.embedder,
            self.calibration,
            select=self.select,
            min_face_size=self.min_face_size,
        )

    def tracking(self, full_every: int) -> FacePipeline:
        """This pipeline detecting, then tracking: the full cascade every ``full_every``
        frames (and on a lost track or a scene change), only the later stages around the
        known faces in between (:mod:`edgeface.detector.tracking`). For a camera, not for
        unrelated photos; ``full_every <= 1`` returns this pipeline unchanged."""
        if full_every <= 1:
            return self
        from edgeface.detector.tracking import TrackingConfig, TrackingDetector

        if not isinstance(self.detector, MTCNNDetector):
            raise ConfigError("tracking needs the MTCNN detector (R-/O-Net around a known face)")
        config = TrackingConfig(full_every=full_every)
        return self.with_detector(TrackingDetector(self.detector, config))

    def _results(self, image: np.ndarray, faces: list[Face]) -> list[FaceResult]:
        if not faces:
            return []
        crops = np.stack([align_face(image, f.landmarks).crop for f in faces])
        embeddings = self.embedder.embed(crops)
        return [FaceResult(f, c, e) for f, c, e in zip(faces, crops, embeddings, strict=True)]

    def faces(self, image: np.ndarray) -> list[Face]:
        """Detected faces big enough to recognize."""
        return [f for f in self.detector.detect(image) if f.size >= self.min_face_size]

    def analyze(self, image: np.ndarray) -> list[FaceResult]:
        """Every recognizable face in ``image`` (RGB uint8), largest first, embedded."""
        return self._results(image, sorted(self.faces(image), key=lambda f: -f.area))

    def choose(
        self, results: Sequence[FaceResult], image_shape: tuple[int, ...]
    ) -> FaceResult | None:
        """Of faces already analyzed (:meth:`analyze`), the one :meth:`best_face` would pick."""
        face = select_face(
            [r.face for r in results], image_shape, self.select, min_size=self.min_face_size
        )
        return next((r for r in results if r.face is face), None)

    def find(
        self,
        image: np.ndarray,
        select: Selection | None = None,
        *,
        timer: StageTimer | None = None,
    ) -> Found:
        """Detect, drop faces below ``min_face_size``, select one, align and embed it.

        A face below the minimum size is never aligned or embedded (most frames at a door
        show a face too far away). ``timer`` is told each stage's seconds."""
        watch = _Stopwatch(timer)
        detected = self.detector.detect(image)
        watch.lap("detect")
        face = select_face(
            detected, image.shape, select or self.select, min_size=self.min_face_size
        )
        if face is None:
            return Found(detected, None)
        crop = align_face(image, face.landmarks).crop
        watch.lap("align")
        embedding = self.embedder.embed(crop[None])[0]
        watch.lap("embed")
        return Found(detected, FaceResult(face, crop, embedding))

    def best_face(self, image: np.ndarray, select: Selection | None = None) -> FaceResult | None:
        """The one face a 1:1 or 1:N decision is about, or None if there is none usable."""
        return self.find(image, select).best

    def verify(
        self,
        image_a: np.ndarray,
        image_b: np.ndarray,
        far: float = DEFAULT_FAR,
        threshold: float | None = None,
    ) -> VerifyResult:
        """Same person? At the calibrated threshold for ``far``, or an explicit cosine
        ``threshold``."""
        if threshold is None:
            threshold = self.threshold(far)
        elif not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be a cosine in [-1, 1], got {threshold}")
        a, b = self.best_face(image_a), self.best_face(image_b)
        if a is None or b is None:
            return VerifyResult(None, False, threshold, far, (a is None, b is None))
        score = float(np.dot(a.embedding, b.embedding))
        return VerifyResult(score, score >= threshold, threshold, far)

    def identify(
        self,
        image: np.ndarray,
        templates: Mapping[str, np.ndarray],
        *,
        far: float = DEFAULT_FAR,
        top_k: int = 5,
    ) -> IdentifyResult:
        """Best matching label among ``templates`` (label -> (M, D) unit embeddings)."""
        threshold = self.threshold(far)
        probe = self.best_face(image)
        if probe is None:
            return IdentifyResult(None, None, threshold, [], None)
        # imported here: the gallery package needs the crypto extra, verify does not
        from edgeface.gallery.matching import Matcher

        matches = Matcher.of_labels(templates).search(probe.embedding, k=top_k)
        ranked = [(m.name, m.score) for m in matches]
        if not ranked or ranked[0][1] < threshold:
            return IdentifyResult(None, ranked[0][1] if ranked else None, threshold, ranked, probe)
        return IdentifyResult(ranked[0][0], ranked[0][1], threshold, ranked, probe)
