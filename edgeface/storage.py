"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half file behind.

Used for model files (``models fetch``) and quantized artifacts; the gallery has its own,
stricter protocol (backup generation, writer lock, directory fsync) in ``gallery/durable.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeface.errors import StorageError


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
