"""Crash-safe gallery saves and the writers' lock.

A door unit loses power whenever someone pulls the plug, often while it is saving. The rules
that make every save all-or-nothing (the write itself is :func:`edgeface.storage.atomic_write`):

* the new content goes to a temporary file *in the same directory* (so ``rename`` is atomic,
  same filesystem), which is fsynced before it is renamed over the old name, and the directory
  is fsynced after, so the rename itself survives power loss;
* before the rename, the current file is kept as ``<name>.bak`` (a hard link, so it costs no
  space and cannot fail half-way; a fsynced copy where links are not supported);
* any ``OSError`` (full disk, read-only card, I/O error) removes the temporary file and raises
  :class:`~edgeface.errors.StorageError`; the old file is never touched before the rename;
* writers take an exclusive ``flock`` on ``<name>.lock`` around read-modify-write, so two
  enrolling processes cannot lose each other's updates. Readers take no lock: ``rename``
  guarantees they see either the old or the new complete file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from edgeface import storage
from edgeface.errors import StorageError
from edgeface.gallery.errors import GalleryError, GalleryNotFoundError, LockTimeoutError
from edgeface.storage import BACKUP_SUFFIX, TMP_MARK, backup_path, fsync_dir, read_regular_file

LOCK_SUFFIX = ".lock"


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def atomic_write(
    path: str | os.PathLike[str], data: bytes | memoryview, *, backup: bool = True
) -> None:
    """Replace a gallery file all-or-nothing, keeping the previous one as ``.bak``.

    :func:`edgeface.storage.atomic_write` with the gallery's defaults (backup on) and wording;
    raises :class:`StorageError` (the old file and its backup unchanged) on any OS error.
    """
    storage.atomic_write(path, data, backup=backup, what="gallery")


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically (used for ``export`` of an untouched file)."""
    with open(src, "rb") as f:
        atomic_write(dst, f.read(), backup=False)


#: the largest gallery file read (100,000 people x 5 templates is about 260 MB)
MAX_GALLERY_BYTES = 1 << 30


def read_file(path: str | os.PathLike[str]) -> bytes:
    """Read a whole gallery file, turning OS errors into gallery errors naming the file.

    Only a regular file of at most :data:`MAX_GALLERY_BYTES` is read: a FIFO or a device
    given as the gallery is refused at once instead of blocking or filling the memory."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise GalleryNotFoundError(
            f"{p}: gallery not found (create it with `edgeface gallery init`)"
        )
    return read_regular_file(
        p, max_bytes=MAX_GALLERY_BYTES, what="gallery file", error=GalleryError
    )


def remove_stale_temps(path: Path) -> int:
    """Delete temporary files left by writers that were killed mid-save.

    Only call this while holding the writer lock: then no live writer owns any of them.
    """
    removed = 0
    prefix = f".{path.name}"
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix) and TMP_MARK in entry.name:
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
    return removed


class WriterLock:
    """Exclusive ``flock`` on ``<gallery>.lock``; waits up to ``timeout`` seconds.

    The lock is on a separate file that is never renamed, so every writer locks the same inode
    no matter how many times the gallery itself has been replaced. ``flock`` locks die with
    their process, so a writer killed by SIGKILL or power loss never leaves a stale lock.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.path = lock_path(Path(path))
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot create the gallery lock file ({exc.strerror or exc})"
            ) from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeoutError(
                        f"{self.path}: another process has been writing the gallery for more "
                        f"than {self.timeout:g} s; try again later"
                    ) from None
                time.sleep(0.02)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = [
    "BACKUP_SUFFIX",
    "WriterLock",
    "atomic_write",
    "backup_path",
    "copy_file",
    "fsync_dir",
    "read_file",
    "remove_stale_temps",
]


def set_aside_damaged(path: Path) -> Path:
    """Move a damaged gallery out of the way under a name no earlier damaged copy has
    (``NAME.damaged-YYYYmmddTHHMMSS[-N]``); the rename never replaces a file. Call it with
    the writer lock held."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime())
    for n in range(1000):
        dest = path.with_name(f"{path.name}.damaged-{stamp}" + (f"-{n}" if n else ""))
        try:
            os.link(path, dest)  # fails if dest exists: an earlier copy is never overwritten
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"{path}: cannot keep the damaged copy ({exc.strerror})") from exc
        os.unlink(path)
        fsync_dir(path.parent)
        return dest
    raise StorageError(f"{path}: too many damaged copies beside it; move them away first")
