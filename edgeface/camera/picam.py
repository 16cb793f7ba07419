"""The Raspberry Pi camera through ``picamera2`` (the ``pi`` extra).

``picamera2`` is imported only when this source is opened, so the package works on machines
without it, and ``--check`` can say "install edgeface[pi]" instead of failing at import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeface.camera.base import CameraError, Clock, FrameSource


class Picamera2Source(FrameSource):
    """libcamera via picamera2, configured for a video stream of ``width`` x ``height``.

    picamera2's format names are little-endian: ``BGR888`` delivers arrays whose channels are
    in R, G, B order, which is what edgeface uses, so no per-frame conversion is needed.
    """

    kind = "picamera2"
    live = True

    def __init__(
        self,
        *,
        camera_num: int = 0,
        width: int = 640,
        height: int = 480,
        fps: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, **({"clock": clock} if clock else {}))
        self.camera_num = camera_num
        self.width, self.height, self.fps = width, height, fps
        self._cam: Any = None

    def describe(self) -> str:
        return f"picamera2 camera '{self.name}' (#{self.camera_num}, {self.width}x{self.height})"

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraError(
                f"{self.describe()}: picamera2 is not installed (pip install 'edgeface[pi]' "
                "or apt install python3-picamera2)"
            ) from exc
        try:
            cam = Picamera2(self.camera_num)
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            cfg = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "BGR888"},
                controls=controls,
                buffer_count=2,
            )
            cam.configure(cfg)
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError/IndexError for a missing camera
            raise CameraError(f"{self.describe()}: cannot start ({exc})") from exc
        self._cam = cam

    def _read(self) -> np.ndarray:
        try:
            arr = self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"{self.describe()}: capture failed ({exc})") from exc
        return np.ascontiguousarray(arr[:, :, :3])

    def _close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
