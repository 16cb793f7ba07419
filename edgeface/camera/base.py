"""The frame-source interface every camera implements.

A source is opened, read one frame at a time, and closed. ``read`` raises
:class:`CameraError` when the device fails (unplugged, stream dropped) and
:class:`EndOfStream` when a finite source (file, directory) is exhausted, so the caller can
tell "try again later" from "done" without inspecting messages.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

import numpy as np

from edgeface.errors import EdgefaceError

Clock = Callable[[], float]


class CameraError(EdgefaceError):
    """The camera could not be opened or stopped delivering frames."""

    exit_code = 12


class EndOfStream(Exception):
    """A finite source (video file, image directory) has no more frames. Not an error."""


class CameraEvent(str, Enum):
    """A change of a live camera's state, reported with a detail string by
    :class:`~edgeface.camera.resilient.ResilientSource`. The value is the audit record's name
    (a ``str`` mixin, so it compares equal to it)."""

    LOST = "camera_lost"
    RESTORED = "camera_restored"


#: receives a camera event and its detail (possibly from a camera reader thread)
CameraEventHook = Callable[[CameraEvent, str], None]


@dataclass(frozen=True)
class Frame:
    """One captured frame: ``image`` is RGB uint8 HxWx3; ``timestamp`` comes from the
    source's clock (monotonic seconds by default), ``index`` counts frames since open."""

    image: np.ndarray
    timestamp: float
    index: int


class FrameSource(ABC):
    """Base class of every camera. Subclasses implement ``_open``, ``_read`` and ``_close``.

    ``live`` tells the daemon whether frames keep coming whether or not we read them (a
    camera: drop stale frames) or wait for us (a file: reading slower only slows replay).
    """

    kind: str = "abstract"
    live: bool = True

    def __init__(self, name: str | None = None, clock: Clock = time.monotonic) -> None:
        self.name = name or self.kind
        self.clock = clock
        self._index = 0
        self._opened = False

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> None:
        if not self._opened:
            self._open()
            self._opened = True

    def read(self) -> Frame:
        """Next frame; opens the source on first use."""
        if not self._opened:
            self.open()
        image = self._read()
        frame = Frame(image=image, timestamp=self.clock(), index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                yield self.read()
            except EndOfStream:
                return

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """One-line description for logs and ``--check``."""
        return f"{self.kind} camera '{self.name}'"

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> np.ndarray: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release the device; the default has nothing to release."""
