"""The recognition pipeline: detect, pick, align, embed, compare.

Rules a caller can rely on:
- Several faces: ``best_face`` picks the largest (default) or the most central one, by
  ``PipelineConfig.select``; ``analyze`` returns all of them, largest first.
- No face: ``best_face`` returns ``None``; ``verify`` and ``identify`` return a result whose
  ``no_face`` says which image had none. Nothing raises for a face-less photo.
- Faces whose box side is below ``min_face_size`` (default 24 px) are ignored: MTCNN does find
  faces smaller than its pyramid minimum (its regression shrinks boxes to ~9 px), but a crop
  upsampled from so few pixels gives an embedding that means nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edgeface.aligner import align_face
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.errors import ConfigError
from edgeface.recognition.calibration import (
    DEFAULT_FAR,
    Calibration,
    calibration_beside,
    load_calibration,
)
from edgeface.types import Face

Selection = Literal["largest", "central"]


@dataclass(frozen=True)
class PipelineConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    select: Selection = "largest"
    #: path of a calibration file; default: the one shipped for the embedding model
    calibration: str | None = None
    #: smallest face (box side, px) that is recognized; smaller ones count as no face
    min_face_size: float = 24.0


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


def select_face(faces: list[Face], image_shape: tuple[int, ...], how: Selection) -> Face | None:
    if not faces:
        return None
    if how == "largest":
        return max(faces, key=lambda f: f.area)
    if how == "central":
        cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
        return min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
    raise ConfigError(f"unknown face selection '{how}' (use 'largest' or 'central')")


class FacePipeline:
    """Detector + aligner + embedder + calibrated thresholds."""

    def __init__(
        self,
        detector: MTCNNDetector,
        embedder: Embedder,
        calibration: Calibration | None = None,
        *,
        select: Selection = "largest",
        min_face_size: float = 24.0,
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

    def best_face(self, image: np.ndarray, select: Selection | None = None) -> FaceResult | None:
        """The one face a 1:1 or 1:N decision is about, or None if there is none usable."""
        face = select_face(self.faces(image), image.shape, select or self.select)
        return None if face is None else self._results(image, [face])[0]

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
        ranked = rank_templates(probe.embedding, templates)[:top_k]
        if not ranked or ranked[0][1] < threshold:
            return IdentifyResult(None, ranked[0][1] if ranked else None, threshold, ranked, probe)
        return IdentifyResult(ranked[0][0], ranked[0][1], threshold, ranked, probe)


def rank_templates(
    probe: np.ndarray, templates: Mapping[str, np.ndarray]
) -> list[tuple[str, float]]:
    """Labels by their best template's cosine similarity to ``probe``, best first."""
    scored = [
        (label, float(np.max(np.atleast_2d(t) @ probe))) for label, t in templates.items() if len(t)
    ]
    return sorted(scored, key=lambda kv: -kv[1])
