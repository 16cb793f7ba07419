"""Reconnect a camera that disappears, with exponential backoff.

USB cameras get unplugged, RTSP streams drop, the Pi camera driver occasionally times out.
The wrapper turns those failures into "close, wait, reopen" and reports each change of state
through ``on_event`` so the daemon can re-lock the door and write the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgeface.camera.backoff import Backoff
from edgeface.camera.base import (
    CameraError,
    CameraEvent,
    CameraEventHook,
    EndOfStream,
    FrameSource,
)


class ResilientSource(FrameSource):
    """Wraps another source; ``read`` retries until a frame arrives or ``should_stop()``.

    ``max_failures`` bounds consecutive failed attempts (None = retry forever, what a door
    unit wants); beyond it :class:`CameraError` propagates.
    """

    def __init__(
        self,
        inner: FrameSource,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_event: CameraEventHook | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        max_failures: int | None = None,
    ) -> None:
        super().__init__(name=inner.name, clock=inner.clock)
        self.kind = inner.kind
        self.live = inner.live
        self.inner = inner
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.on_event = on_event or (lambda event, detail: None)
        self.should_stop = should_stop
        self.max_failures = max_failures
        self.failures = 0
        self.reconnects = 0
        self._lost = False

    def describe(self) -> str:
        return self.inner.describe()

    def _open(self) -> None:
        # Opening is deferred to _read so that a camera absent at start-up is retried too.
        pass

    def _fail(self, exc: CameraError) -> None:
        self.failures += 1
        self.inner.close()
        if not self._lost:
            self._lost = True
            self.on_event(CameraEvent.LOST, str(exc))
        if self.max_failures is not None and self.failures >= self.max_failures:
            raise CameraError(f"{exc} (gave up after {self.failures} attempts)") from exc
        self.sleep(self.backoff.next())

    def _read(self) -> np.ndarray:
        while not self.should_stop():
            try:
                self.inner.open()
                frame = self.inner.read()
            except EndOfStream:
                raise
            except CameraError as exc:
                self._fail(exc)
                continue
            if self._lost:
                self._lost = False
                self.reconnects += 1
                self.on_event(CameraEvent.RESTORED, f"after {self.failures} failed attempts")
            self.failures = 0
            self.backoff.reset()
            return frame.image
        raise EndOfStream("stopped")

    def _close(self) -> None:
        self.inner.close()
