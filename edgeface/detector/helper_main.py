"""Entry point of an MTCNN helper process: ``python -m edgeface.detector.helper_main ARGS``.

ARGS are WEIGHTS FD [BACKEND] (the whole-cascade backend that opens WEIGHTS).

Kept apart from :mod:`edgeface.detector.helper`, which the package imports: ``python -m`` on
an already imported module would run it twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import cv2

from edgeface.detector.helper import serve


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group; the main process decides what happens (it stops
    # its helpers by closing their pipes, and they exit at EOF). The boot line of
    # HelperProcess ignores SIGINT before any import; this covers a direct `python -m` start.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    weights, fd = Path(argv[0]), int(argv[1])
    backend_arg = argv[2:3]  # the whole-cascade backend; serve's default when not given
    # the main process and the helpers already use every core; OpenCV's own threads would
    # only compete with them (in one comparison a 2-thread OpenCV here cost the frame ~3 ms)
    cv2.setNumThreads(1)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the answers
    with contextlib.suppress(BrokenPipeError, EOFError):  # the main process went away
        serve(weights, fd, sys.stdin.buffer, replies, *backend_arg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
