"""OpenCV ``VideoCapture`` cameras: USB/V4L2 index or device, RTSP/HTTP URL, GStreamer pipeline.

The backend is chosen from the form of ``device`` rather than left to OpenCV's guess: a string
containing ``!`` is a GStreamer pipeline (a Jetson CSI camera through ``nvarguscamerasrc``),
and OpenCV would otherwise try to open it as a file name and fail with no useful message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edgeface.camera.base import CameraError, Clock, EndOfStream, FrameSource
from edgeface.imaging import ensure_rgb_uint8

CaptureFactory = Callable[..., Any]
_DEV_RE = re.compile(r"^/dev/video\d+$")


def capture_api(device: int | str) -> int:
    """The ``cv2.CAP_*`` backend for ``device``."""
    if isinstance(device, int):
        return cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
    if "!" in device:
        return cv2.CAP_GSTREAMER
    if _DEV_RE.match(device):
        return cv2.CAP_V4L2
    if "://" in device:
        return cv2.CAP_FFMPEG
    return cv2.CAP_ANY


def _redact(device: int | str) -> str:
    """Camera URLs often carry a password (rtsp://user:pass@host); never log it."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(device))


class OpenCVSource(FrameSource):
    """A live camera read through ``cv2.VideoCapture``.

    ``capture_factory`` exists so tests can inject a fake capture that fails and recovers.
    """

    kind = "opencv"
    live = True

    def __init__(
        self,
        device: int | str = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        capture_factory: CaptureFactory = cv2.VideoCapture,
    ) -> None:
        super().__init__(name=name, **({"clock": clock} if clock else {}))
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.api = capture_api(device)
        self.capture_factory = capture_factory
        self._cap: Any = None

    def describe(self) -> str:
        return f"opencv camera '{self.name}' ({_redact(self.device)})"

    def _open(self) -> None:
        try:
            cap = self.capture_factory(self.device, self.api)
        except cv2.error as exc:  # some backends raise instead of returning a closed capture
            raise CameraError(f"{self.describe()}: cannot open ({exc})") from exc
        if cap is None or not cap.isOpened():
            raise CameraError(
                f"{self.describe()}: cannot open (device missing, busy, or no permission)"
            )
        if self.api != cv2.CAP_GSTREAMER:  # a pipeline fixes these itself
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            # A 1-frame driver queue: we want the newest frame, not one from a second ago.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def _read(self) -> np.ndarray:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraError(f"{self.describe()}: no frame (camera disconnected?)")
        return ensure_rgb_uint8(bgr, name=self.describe(), assume_bgr=True)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(OpenCVSource):
    """A video file, for replay and benchmarks. Not live: frames wait for the reader.

    ``loop`` restarts at the end (soak tests); otherwise the end raises :class:`EndOfStream`.
    """

    kind = "video"
    live = False

    def __init__(self, path: str, *, loop: bool = False, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.api = cv2.CAP_ANY
        self.loop = loop

    def describe(self) -> str:
        return f"video file '{self.device}'"

    def _open(self) -> None:
        from pathlib import Path

        if not Path(str(self.device)).is_file():
            raise CameraError(f"{self.describe()}: no such file")
        super()._open()

    def _read(self) -> np.ndarray:
        ok, bgr = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfStream(str(self.device))
        return ensure_rgb_uint8(bgr, name=self.describe(), assume_bgr=True)
