"""The session interface every backend implements, and the registry that picks one."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeface.errors import ModelError


@dataclass(frozen=True)
class SessionInfo:
    """What a wrapper needs to know to feed a model: its input shape, layout and dtype.

    ``input_shape`` uses ``None`` for dynamic dimensions. ``input_layout`` is ``"NCHW"`` for
    ONNX models and ``"NHWC"`` for TFLite models converted by onnx2tf; wrappers transpose
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

#: backend name -> "module:factory"; the module is imported only when the backend is used
BACKENDS: dict[str, str] = {
    "onnxruntime": "edgeface.backends.onnxruntime_backend:OnnxRuntimeSession",
    "litert": "edgeface.backends.litert_backend:LiteRTSession",
}


def register_backend(name: str, target: str) -> None:
    BACKENDS[name] = target


def open_session(
    path: str | Path, backend: str = "onnxruntime", **options: Any
) -> InferenceSession:
    """Open ``path`` with the named backend; unknown names and missing runtimes are ModelError."""
    try:
        target = BACKENDS[backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ModelError(f"unknown inference backend '{backend}' (known: {known})") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"backend '{backend}' is not installed ({exc.name}); install edgeface with the "
            f"matching extra, e.g. pip install 'edgeface[{_extra_for(backend)}]'"
        ) from exc
    factory: SessionFactory = getattr(module, attr)
    return factory(Path(path), **options)


def _extra_for(backend: str) -> str:
    return {"onnxruntime": "onnx", "litert": "tflite"}.get(backend, backend)
