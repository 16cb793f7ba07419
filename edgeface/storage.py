"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half file behind, and
reading untrusted ones (:func:`read_regular_file`) so that a FIFO or /dev/zero cannot hang or
exhaust the process.

Used for model files (``models fetch``) and quantized artifacts; the gallery has its own,
stricter protocol (backup generation, writer lock, directory fsync) in ``gallery/durable.py``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeface.errors import EdgefaceError, StorageError


@contextmanager
def staged_path(dest: Path) -> Iterator[Path]:
    """Yield a path to write ``dest``'s content to; it becomes ``dest`` only if the block ends
    normally and the file exists.

    The path lives in a private staging directory beside ``dest`` (same file system, so the
    final rename is atomic), which also holds any side files a converter writes. On any
    exception, KeyboardInterrupt included, the staging directory is removed and an existing
    ``dest`` is left untouched.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise StorageError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from exc
    tmp = stage / dest.name
    try:
        yield tmp
        if not tmp.is_file():
            raise StorageError(f"{dest.name}: the converter produced no file")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int,
    what: str = "file",
    error: type[EdgefaceError] = StorageError,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or one clear ``error``.

    A FIFO, socket or device (``/dev/zero``) is refused without blocking on it (opened
    non-blocking, checked with ``fstat`` on the open descriptor); a larger file, a sparse
    one included, is refused before it is read.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise error(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise error(f"{p}: is a directory, not a {what}") from exc
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{p}: is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p}: not a regular file (a FIFO, socket or device?); refusing to read it")
        if st.st_size > max_bytes:
            raise error(
                f"{p}: {st.st_size:,} bytes is too large for a {what} (limit {max_bytes:,})"
            )
        chunks = []
        left = max_bytes + 1  # a file that grows while read is still bounded
        while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
            chunks.append(block)
            left -= len(block)
        if left <= 0:
            raise error(f"{p}: grew beyond {max_bytes:,} bytes while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
