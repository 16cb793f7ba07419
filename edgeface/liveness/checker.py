"""The liveness check the door, the kiosk and the CLI call: is this face a live person?

Two networks look at the same face with different amounts of context (MiniFASNetV2 on a
2.7x crop, MiniFASNetV1SE on a 4.0x crop); their softmaxes are added as upstream does and the
score is the mean probability of "live" (0..1). A face is live when the score reaches the
threshold measured for a target BPCER (:mod:`edgeface.liveness.calibration`).

Fails closed: a missing, corrupt or mismatched model or calibration is a
:class:`~edgeface.errors.ModelError` / :class:`~edgeface.errors.ConfigError` when the checker
is built, never a silent "live".
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError
from edgeface.liveness.calibration import (
    DEFAULT_TARGET_BPCER,
    LivenessCalibration,
    find_calibration,
)
from edgeface.liveness.model import LIVE_INDEX, LivenessNet
from edgeface.types import Face

#: the float pair from the manifest (built by ``edgeface models fetch``)
DEFAULT_MODELS = ("minifasnet-v2", "minifasnet-v1se")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LivenessConfig:
    """Which liveness models to run and where the decision threshold comes from."""

    models: tuple[str, ...] = DEFAULT_MODELS
    #: explicit model files (e.g. the INT8 pair), one per entry of ``models``
    paths: tuple[str, ...] | None = None
    #: inference backend; None: by each file's format (``.tflite`` LiteRT, else ONNX
    #: Runtime, as for the manifest's float pair)
    backend: str | None = None
    #: explicit threshold on the fused live score; else from the calibration at target_bpcer
    threshold: float | None = None
    target_bpcer: float = DEFAULT_TARGET_BPCER
    #: calibration file; default: the one whose model hashes match, beside the model files
    #: (``paths``) or packaged
    calibration: str | None = None
    #: one inference thread per network: two each were slower on the 2-core dev VM (README
    #: "Liveness")
    session_options: dict[str, object] = field(default_factory=lambda: {"threads": 1})
    #: run the networks side by side, one thread each. Off by default: on the 2-core dev VM it
    #: halved the time of one check on its own (INT8 pair 1.3-1.7 ms vs 2.9-3.2 ms) but did
    #: not shorten the door's frame, where the liveness stage took as long or longer
    #: (``bench/bench_liveness.py --sequential``); measure on the device before turning it on
    parallel: bool = False


def _backend_of(path: str | None) -> str:
    """The backend that runs this file's format; ONNX Runtime for anything else (then a
    missing or foreign file fails with its own name when it is opened)."""
    from edgeface.backends.registry import format_backends

    suffix = Path(path).suffix.lstrip(".").lower() if path else ""
    return format_backends().get(suffix, "onnxruntime")


@dataclass(frozen=True)
class LivenessResult:
    """Fused score (mean live probability), the threshold it was compared with, the verdict."""

    score: float
    threshold: float
    live: bool
    #: summed softmax vector of the networks (upstream's "prediction"), for audit and debugging
    summed: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"live": self.live, "score": round(self.score, 5),
                "threshold": round(self.threshold, 5)}  # fmt: skip


class LivenessChecker:
    """``score(image_rgb, face)``, ``is_live(...)``, ``check(...)`` for faces of our detector."""

    def __init__(
        self,
        nets: Sequence[LivenessNet],
        threshold: float,
        calibration: LivenessCalibration | None = None,
        *,
        parallel: bool = False,
    ) -> None:
        if not nets:
            raise ConfigError("liveness needs at least one model")
        self.nets = list(nets)
        self.threshold = float(threshold)
        self.calibration = calibration
        self._pool = (
            ThreadPoolExecutor(len(self.nets), thread_name_prefix="edgeface-liveness")
            if parallel and len(self.nets) > 1
            else None
        )

    @classmethod
    def from_config(cls, config: LivenessConfig | None = None) -> LivenessChecker:
        cfg = config or LivenessConfig()
        paths: Sequence[str | None] = cfg.paths or [None] * len(cfg.models)
        if len(paths) != len(cfg.models):
            raise ConfigError(
                f"liveness: {len(paths)} model paths for {len(cfg.models)} models "
                f"({', '.join(cfg.models)})"
            )
        nets = [
            LivenessNet.open(m, p, cfg.backend or _backend_of(p), **cfg.session_options)
            for m, p in zip(cfg.models, paths, strict=True)
        ]
        calibration = None
        if cfg.threshold is None:
            cal_path = Path(cfg.calibration) if cfg.calibration else None
            beside = [Path(p).parent for p in cfg.paths or ()]
            calibration = find_calibration([n.model_sha256 for n in nets], cal_path, beside)
            threshold = calibration.threshold(cfg.target_bpcer)
        else:
            threshold = cfg.threshold
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"liveness threshold must be in (0, 1), got {threshold}")
        return cls(nets, threshold, calibration, parallel=cfg.parallel)

    @property
    def model_sha256(self) -> list[str]:
        return [n.model_sha256 for n in self.nets]

    def summed(self, image_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Summed softmax vectors ``(N, 3)`` of every network for faces given by boxes."""
        total = np.zeros((len(boxes), 3), np.float32)
        if not boxes:
            return total

        def run(net: LivenessNet) -> np.ndarray:
            return net.probabilities(np.stack([net.patch(image_rgb, b) for b in boxes]))

        if self._pool is None:
            parts = [run(net) for net in self.nets]
        else:  # ONNX Runtime, LiteRT and OpenCV release the GIL while they compute
            parts = list(self._pool.map(run, self.nets))
        for p in parts:
            total += p
        return total

    def scores(self, image_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """Fused live scores (0..1) for faces given by boxes."""
        return self.summed(image_rgb, boxes)[:, LIVE_INDEX] / len(self.nets)

    def score(self, image_rgb: np.ndarray, face: Face) -> float:
        """Mean probability over the networks that ``face`` is a live person (0..1)."""
        return float(self.scores(image_rgb, [face.box])[0])

    def check(self, image_rgb: np.ndarray, face: Face) -> LivenessResult:
        summed = self.summed(image_rgb, [face.box])[0]
        score = float(summed[LIVE_INDEX]) / len(self.nets)
        return LivenessResult(score, self.threshold, score >= self.threshold,
                              tuple(round(float(v), 5) for v in summed))  # fmt: skip

    def is_live(self, image_rgb: np.ndarray, face: Face) -> bool:
        return self.score(image_rgb, face) >= self.threshold
