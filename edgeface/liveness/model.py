"""One liveness network: context patch -> session.run -> class probabilities.

Same shape as the embedder: the preprocessing (colour order, scaling, crop scale) comes from
the manifest entry, the session from :func:`edgeface.backends.open_session`, so the float
ONNX, INT8 ONNX and TFLite files all run through this one class.

MiniFASNet's convention is easy to get silently wrong (``shared/models/minifasnet/SOURCE.md``
measured it): the patch is **BGR** with raw 0-255 values. Feeding RGB turns both upstream
spoof samples into "live"; dividing by 255 turns the live one into a spoof.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface.backends import InferenceSession, open_session
from edgeface.errors import ImageError, ModelError
from edgeface.liveness.crop import context_patch
from edgeface.modelstore import resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

#: index of "live" in MiniFASNet's three classes (0 and 2 are both spoof classes)
LIVE_INDEX = 1


class LivenessNet:
    """Class probabilities ``(N, 3)`` of one MiniFASNet for faces given by their boxes."""

    def __init__(
        self,
        session: InferenceSession,
        *,
        preprocessing: dict[str, object],
        name: str,
        model_sha256: str,
    ) -> None:
        self.session = session
        self.name = name
        self.model_sha256 = model_sha256
        self.crop_scale = float(preprocessing.get("crop_scale", 1.0))  # type: ignore[arg-type]
        size = preprocessing.get("size", [80, 80])
        self.size = int(size[0])  # type: ignore[index]
        self._scale = float(preprocessing.get("scale", 1.0))  # type: ignore[arg-type]
        self._bgr = str(preprocessing.get("color", "BGR")).upper() == "BGR"
        self._layout = session.info.input_layout
        self._check_io()

    @classmethod
    def open(cls, model: str, path: str | Path | None = None, backend: str = "onnxruntime",
             **session_options: object) -> LivenessNet:  # fmt: skip
        """The manifest entry ``model`` (its file, or ``path``, e.g. an INT8 artifact)."""
        entry = get_entry(model)
        file = resolve_model(model) if path is None else Path(path)
        if not file.is_file():
            raise ModelError(f"liveness model {file} does not exist")
        session = open_session(file, backend, **session_options)
        return cls(session, preprocessing=entry.preprocessing, name=model,
                   model_sha256=sha256_file(file))  # fmt: skip

    def _check_io(self) -> None:
        shape = self.session.info.input_shape
        expected = (3, self.size, self.size) if self._layout == "NCHW" else (self.size,) * 2 + (3,)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ModelError(
                f"{self.session.info.path}: input shape {shape} is not a {self._layout} "
                f"{self.size}x{self.size} liveness model"
            )
        out = self.session.run(self.preprocess(np.zeros((1, self.size, self.size, 3), np.uint8)))
        if len(out) != 1 or out[0].shape != (1, 3):
            raise ModelError(
                f"{self.session.info.path}: outputs {[o.shape for o in out]} are not one "
                "[N, 3] liveness probability"
            )

    def patch(self, image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """This network's ``size x size`` context patch (RGB uint8) of the face ``box``."""
        return context_patch(image_rgb, box, self.crop_scale, self.size)

    def preprocess(self, patches_rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(N, size, size, 3)`` -> float32 in the model's colour order and layout."""
        if patches_rgb.ndim != 4 or patches_rgb.shape[1:] != (self.size, self.size, 3):
            raise ImageError(f"liveness needs (N, {self.size}, {self.size}, 3) patches, "
                             f"got {patches_rgb.shape}")  # fmt: skip
        x = patches_rgb[..., ::-1] if self._bgr else patches_rgb
        x = x.astype(np.float32) * np.float32(self._scale)
        if self._layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def probabilities(self, patches_rgb: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(N, 3)`` for patches made by :meth:`patch`."""
        if len(patches_rgb) == 0:
            return np.empty((0, 3), np.float32)
        fixed = self.session.info.fixed_batch
        step = fixed or 64
        outs = [
            self.session.run(self.preprocess(patches_rgb[i : i + step]))[0]
            for i in range(0, len(patches_rgb), step)
        ]
        return np.concatenate(outs).astype(np.float32)
