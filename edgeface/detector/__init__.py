"""Face detection: a NumPy MTCNN cascade (P-Net, R-Net, O-Net) with pluggable backends.

The names below load on first use (PEP 562): a detector helper process imports
``edgeface.detector.helper`` only, and so does not pay for the model store, the backends
registry or hashlib's OpenSSL (about 7 MB of a helper's memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeface.detector.mtcnn import DetectorConfig, MTCNNDetector, pyramid_scales

__all__ = ["DetectorConfig", "MTCNNDetector", "pyramid_scales"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgeface.detector import mtcnn

        return getattr(mtcnn, name)
    raise AttributeError(f"module 'edgeface.detector' has no attribute {name!r}")
