"""Frames for the daemon loop: keep only the newest frame of a live camera.

A live camera keeps producing frames whether or not we are done with the previous one; queuing
them would make decisions about where a person *was* seconds ago. A reader thread therefore
overwrites a one-frame slot and counts what it dropped. Replays (files, image directories) are
read synchronously instead, so every frame is processed and tests are deterministic.
"""

from __future__ import annotations

import threading
import time

from edgeface.camera.base import EndOfStream, Frame, FrameSource


class FrameFeed:
    """``stop``: the door's stop flag (:class:`~edgeface.door.inbox.DoorInbox`), shared with
    the daemon and the camera wrapper, so a stop request ends the reader thread and the
    camera's reconnect loop at once; :meth:`close` sets it. A private one by default."""

    def __init__(
        self, source: FrameSource, *, drop_frames: bool, stop: threading.Event | None = None
    ) -> None:
        self.source = source
        self.drop_frames = drop_frames
        self.dropped = 0
        self.captured = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._error: BaseException | None = None
        self._stop = stop if stop is not None else threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if self.drop_frames and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgeface-camera", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except BaseException as exc:  # handed to the main loop, which decides
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
                self.captured += 1
                self._cond.notify_all()

    def next(self, timeout: float) -> Frame | None:
        """The newest frame, or None if none arrived within ``timeout`` seconds.

        Raises what the source raised (EndOfStream, CameraError) once the frames before it
        have been handed out.
        """
        if not self.drop_frames:
            frame = self.source.read()
            self.captured += 1
            return frame
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None and self._error is None and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))
            if self._latest is not None:
                frame, self._latest = self._latest, None
                return frame
            if self._error is not None:
                raise self._error
            raise EndOfStream("stopped")

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.source.close()
