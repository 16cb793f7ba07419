"""Keeping third-party libraries' chatter off the user's stderr (``--debug`` brings it back).

OpenCV logs ``[ WARN:0@...]`` lines (camera open, DNN targets), its FFmpeg backend prints
``[mjpeg] No JPEG data found`` and libjpeg prints ``Corrupt JPEG data: ...`` straight to file
descriptor 2. edgeface already reports each of those conditions itself, in one line, so by
default the CLI turns them off: the logging ones through the libraries' own settings (read
when they start, hence environment variables set before OpenCV opens anything), libjpeg's by
pointing descriptor 2 at /dev/null for the duration of one decode (:func:`native_stderr_muted`).
This module imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: environment read by OpenCV (and its FFmpeg backend) when they first log; a user's value wins
QUIET_ENV = {
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # AV_LOG_QUIET
    "OPENCV_VIDEOIO_DEBUG": "0",
}

_muted = False
_lock = threading.Lock()


def silence_third_party(*, debug: bool = False) -> None:
    """Called once by the CLI: quiet by default, everything shown with ``debug``."""
    global _muted
    if debug:
        _muted = False
        return
    for var, value in QUIET_ENV.items():
        os.environ.setdefault(var, value)
    if "cv2" in sys.modules:  # already imported: its log level is set through the API too
        try:
            cv2 = sys.modules["cv2"]
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
    _muted = True


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Send what native code writes to descriptor 2 to /dev/null while the block runs.

    Only when :func:`silence_third_party` turned quiet mode on (the CLI without ``--debug``);
    a library caller's stderr is left alone.
    """
    if not _muted:
        yield
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError):
            yield
            return
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
