"""A directory of still images played back as a camera: tests, demos and replays of incidents."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeface.camera.base import CameraError, Clock, EndOfStream, FrameSource
from edgeface.errors import ImageError
from edgeface.imaging import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


class ImageDirectorySource(FrameSource):
    """Yields the images of a directory (sorted by name), or an explicit list of files.

    ``fps`` paces the replay (sleeping between frames, through the injectable ``sleep``);
    without it frames come as fast as they are read. ``loop`` starts over at the end. An
    unreadable image is skipped with a note in ``skipped`` rather than ending the replay.
    """

    kind = "images"
    live = False

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        files: Sequence[str | Path] | None = None,
        fps: float | None = None,
        loop: bool = False,
        name: str | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name=name, **({"clock": clock} if clock else {}))
        if (path is None) == (files is None):
            raise ValueError("give exactly one of path= or files=")
        self.path = Path(path) if path is not None else None
        self._explicit = [Path(f) for f in files] if files is not None else None
        self.fps = fps
        self.loop = loop
        self.sleep = sleep
        self.files: list[Path] = []
        self.skipped: list[str] = []
        self._pos = 0
        self._last: float | None = None

    def describe(self) -> str:
        where = self.path if self.path is not None else f"{len(self._explicit or [])} files"
        return f"image replay '{where}'"

    def _open(self) -> None:
        if self._explicit is not None:
            self.files = list(self._explicit)
        else:
            assert self.path is not None
            if not self.path.is_dir():
                raise CameraError(f"{self.describe()}: not a directory")
            self.files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        if not self.files:
            raise CameraError(f"{self.describe()}: no images")
        self._pos = 0

    def _pace(self) -> None:
        if not self.fps:
            return
        now = self.clock()
        if self._last is not None:
            wait = self._last + 1.0 / self.fps - now
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def _read(self) -> np.ndarray:
        for _ in range(len(self.files) + 1):
            if self._pos >= len(self.files):
                if not self.loop:
                    raise EndOfStream(self.describe())
                self._pos = 0
            path = self.files[self._pos]
            self._pos += 1
            try:
                image = load_image(path)
            except ImageError as exc:
                self.skipped.append(str(exc))
                continue
            self._pace()
            return image
        raise CameraError(f"{self.describe()}: no readable images")
