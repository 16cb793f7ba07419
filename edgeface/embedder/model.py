"""Face embedder wrapper: preprocess -> session.run -> L2-normalize.

The same class drives every embedding model (EdgeFace-XS, the default; EdgeFace-XXS;
MobileFaceNet) and each one's float ONNX, INT8 ONNX and TFLite files; only the session
differs. The model's preprocessing (colour order, mean/std, layout) comes from the manifest
and the embedding size (512 for EdgeFace, 128 for MobileFaceNet) from the model's output, so
another model needs no code change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.backends import InferenceSession, open_session
from edgeface.errors import ImageError, ModelError
from edgeface.modelstore import resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

INPUT_SIZE = 112
#: the manifest entry of the default embedding model (README "Embedders on pose": why)
DEFAULT_EMBEDDER = "edgeface-xs"
#: embed the mirrored crop too and average (+0.3 points LFW accuracy for twice the cost).
#: The runtime (door, kiosk, verify, the packaged calibrations) runs with flip, so every
#: flip default (EmbedderConfig, Embedder, Calibration, load_calibration) is this one.
DEFAULT_FLIP = True


@dataclass(frozen=True)
class EmbedderConfig:
    """Which embedding model to run and how."""

    #: manifest entry whose preprocessing and embedding space apply. EdgeFace-XS by default:
    #: CFP-FP dev 93.6 % vs MobileFaceNet's 85 % (pose), README "Accuracy"; MobileFaceNet
    #: stays selectable ("mobilefacenet-dyn": the smallest model, all-convolutional)
    model: str = DEFAULT_EMBEDDER
    #: explicit model file (e.g. an INT8 artifact); defaults to the manifest file
    path: str | None = None
    backend: str = "onnxruntime"
    #: add the embedding of the mirrored crop (see ``DEFAULT_FLIP``)
    flip: bool = DEFAULT_FLIP
    max_batch: int = 32
    #: one inference thread by default: at batch 1-2 (one face, flip) neither INT8 model gained
    #: from a second thread on the 2-core dev VM and float EdgeFace-XS did not either, while the
    #: door's tracked frame got faster (README "Door"); ``{"threads": N}`` or ``{}`` overrides
    session_options: dict[str, object] = field(default_factory=lambda: {"threads": 1})


class Embedder:
    """Maps aligned 112x112 RGB crops to unit-length embeddings."""

    def __init__(
        self,
        session: InferenceSession,
        *,
        preprocessing: dict[str, object],
        model_id: str,
        model_sha256: str,
        flip: bool = DEFAULT_FLIP,
        max_batch: int = 32,
    ) -> None:
        self.session = session
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.flip = flip
        fixed = session.info.fixed_batch
        self.max_batch = fixed if fixed else max_batch
        self._layout = session.info.input_layout
        self._check_input_shape()
        scale = float(preprocessing.get("scale", 1.0 / 255.0))  # type: ignore[arg-type]
        mean = np.asarray(preprocessing.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        std = np.asarray(preprocessing.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
        # x * scale - mean) / std  ==  x * a + b, folded once
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)
        self._bgr = str(preprocessing.get("color", "RGB")).upper() == "BGR"
        self.dim = self._probe_output_dim()

    @classmethod
    def from_config(cls, config: EmbedderConfig | None = None) -> Embedder:
        cfg = config or EmbedderConfig()
        entry = get_entry(cfg.model)
        path = resolve_model(cfg.model) if cfg.path is None else Path(cfg.path)
        if not path.is_file():
            raise ModelError(f"embedding model {path} does not exist")
        session = open_session(path, cfg.backend, **cfg.session_options)
        return cls(
            session,
            preprocessing=entry.preprocessing,
            model_id=entry.embedding_space or entry.name,
            model_sha256=sha256_file(path),
            flip=cfg.flip,
            max_batch=cfg.max_batch,
        )

    def _check_input_shape(self) -> None:
        shape = self.session.info.input_shape
        expected = (
            (3, INPUT_SIZE, INPUT_SIZE) if self._layout == "NCHW" else (INPUT_SIZE,) * 2 + (3,)
        )
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ModelError(
                f"{self.session.info.path}: input shape {shape} is not a {self._layout} "
                f"112x112 RGB face model (expected [N, {', '.join(map(str, expected))}])"
            )

    def _probe_output_dim(self) -> int:
        out = self.session.run(
            self._to_layout(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32))
        )
        if len(out) != 1 or out[0].ndim != 2 or out[0].shape[0] != 1:
            shapes = [o.shape for o in out]
            raise ModelError(
                f"{self.session.info.path}: outputs {shapes} are not one [N, D] embedding"
            )
        return int(out[0].shape[1])

    def _to_layout(self, nhwc: np.ndarray) -> np.ndarray:
        return nhwc.transpose(0, 3, 1, 2) if self._layout == "NCHW" else nhwc

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(N, 112, 112, 3)`` -> normalized float32 in the session's layout."""
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ImageError(f"embedder needs (N, 112, 112, 3) crops, got {crops.shape}")
        if self._bgr:
            crops = crops[..., ::-1]
        x = crops.astype(np.float32) * self._a + self._b
        return np.ascontiguousarray(self._to_layout(x))

    def _run(self, crops: np.ndarray) -> np.ndarray:
        outs = [
            self.session.run(self.preprocess(crops[i : i + self.max_batch]))[0]
            for i in range(0, len(crops), self.max_batch)
        ]
        return np.concatenate(outs, axis=0)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Unit-length float32 embeddings ``(N, D)`` for aligned crops."""
        if crops.ndim == 3:
            crops = crops[None]
        if len(crops) == 0:
            return np.empty((0, self.dim), np.float32)
        if self.flip:
            # crops and their mirrors in one batch: one session call instead of two
            both = self._run(np.concatenate([crops, crops[:, :, ::-1]]))
            raw = both[: len(crops)] + both[len(crops) :]
        else:
            raw = self._run(crops)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)
