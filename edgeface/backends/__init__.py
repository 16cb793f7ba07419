"""Inference backends behind one small interface, chosen by name in configuration.

A model wrapper (detector stage, embedder) does preprocess -> ``session.run`` -> postprocess
and never asks which runtime is underneath. Backends register themselves by name; the
runtime imports only the one a configuration names, so a Pi without ONNX Runtime can still
run the LiteRT or NumPy path.
"""

from edgeface.backends.base import (
    BACKENDS,
    InferenceSession,
    SessionInfo,
    open_session,
    register_backend,
)

__all__ = ["BACKENDS", "InferenceSession", "SessionInfo", "open_session", "register_backend"]
