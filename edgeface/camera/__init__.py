"""Camera sources: one interface (:class:`FrameSource`) yielding RGB frames with timestamps.

Use :func:`open_source` with a :class:`CameraConfig` or a config table (``{kind = "opencv",
device = 0}``, checked by :func:`parse_camera`); the kinds are
registered in :mod:`edgeface.camera.factory`, so adding a camera type never touches callers.
"""

from edgeface.camera.backoff import Backoff
from edgeface.camera.base import (
    CameraError,
    CameraEvent,
    CameraEventHook,
    EndOfStream,
    Frame,
    FrameSource,
)
from edgeface.camera.factory import SOURCE_KINDS, CameraConfig, open_source, parse_camera
from edgeface.camera.resilient import ResilientSource

__all__ = [
    "SOURCE_KINDS",
    "Backoff",
    "CameraConfig",
    "CameraError",
    "CameraEvent",
    "CameraEventHook",
    "EndOfStream",
    "Frame",
    "FrameSource",
    "ResilientSource",
    "open_source",
    "parse_camera",
]
