"""The session interface every backend implements, and ``open_session`` over the registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeface.backends.registry import get_backend
from edgeface.errors import ModelError


@dataclass(frozen=True)
class SessionInfo:
    """What a wrapper needs to know to feed a model: its input shape, layout and dtype.

    ``input_shape`` uses ``None`` for dynamic dimensions. ``input_layout`` is the backend's
    (``Backend.layout`` in :mod:`edgeface.backends.registry`): ``"NCHW"`` for ONNX models,
    ``"NHWC"`` for TFLite models converted by onnx2tf and the NumPy MTCNN; wrappers transpose
    accordingly. Quantized I/O is hidden by the session: ``run`` takes and returns float32.
    """

    input_shape: tuple[int | None, ...]
    input_layout: str
    backend: str
    path: Path | None = None

    @property
    def fixed_batch(self) -> int | None:
        return self.input_shape[0] if self.input_shape else None


class InferenceSession(Protocol):
    info: SessionInfo

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the model on one float32 input batch; returns all outputs as float32."""
        ...


SessionFactory = Callable[..., InferenceSession]


def open_session(
    path: str | Path, backend: str = "onnxruntime", **options: Any
) -> InferenceSession:
    """Open ``path`` with the named backend; unknown names and missing runtimes are ModelError."""
    spec = get_backend(backend)
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"backend '{backend}' is not installed ({exc.name}); install edgeface with the "
            f"matching extra, e.g. pip install 'edgeface[{spec.extra or backend}]'"
        ) from exc
    factory: SessionFactory = getattr(module, attr)
    return factory(Path(path), **options)
