"""Inference backends behind one small interface, chosen by name in configuration.

A model wrapper (detector stage, embedder) does preprocess -> ``session.run`` -> postprocess
and never asks which runtime is underneath. What differs between backends (layout, model
format, default MTCNN files) lives in :mod:`edgeface.backends.registry`; the runtime imports
only the one a configuration names, so a Pi without ONNX Runtime can still run the LiteRT or
NumPy path.
"""

from edgeface.backends.base import InferenceSession, SessionInfo, open_session
from edgeface.backends.registry import (
    BACKENDS,
    Backend,
    backend_for_format,
    format_backends,
    get_backend,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "InferenceSession",
    "SessionInfo",
    "backend_for_format",
    "format_backends",
    "get_backend",
    "open_session",
    "register_backend",
]
