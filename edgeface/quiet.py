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


@contextmanager
def third_party_quiet(*, debug: bool = False) -> Iterator[None]:
    """For the CLI, around one command: quiet by default, everything shown with ``debug``.

    The environment and the mute flag are restored afterwards, so a program (or a test) that
    calls the CLI's ``main`` in-process, then starts other processes, does not pass our
    settings on as if they were its own."""
    global _muted
    saved_env = {var: os.environ.get(var) for var in QUIET_ENV}
    saved_muted = _muted
    if not debug:
        for var, value in QUIET_ENV.items():
            os.environ.setdefault(var, value)
        _set_opencv_log_level("ERROR")
        _muted = True
    try:
        yield
    finally:
        _muted = saved_muted
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if not debug:
            _set_opencv_log_level(saved_env["OPENCV_LOG_LEVEL"] or "INFO")


def _set_opencv_log_level(level: str) -> None:
    """OpenCV reads $OPENCV_LOG_LEVEL once, at import; once imported, its API decides."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        return
    try:
        logging = cv2.utils.logging
        logging.setLogLevel(getattr(logging, f"LOG_LEVEL_{level.upper()}", logging.LOG_LEVEL_INFO))
    except AttributeError:
        pass


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Send what native code writes to descriptor 2 to /dev/null while the block runs.

    Only when :func:`third_party_quiet` turned quiet mode on (the CLI without ``--debug``);
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
