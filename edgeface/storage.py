"""Writing files so that a crash, Ctrl-C, a power cut or a full disk never leaves a half file
behind, and reading untrusted ones (:func:`read_regular_file`) so that a FIFO or /dev/zero
cannot hang or exhaust the process.

The one atomic-write helper of the project: :func:`atomic_write` for bytes in memory (the
gallery, its backups, audit head, fleet and kiosk state, calibrations, artifact manifests),
:func:`staged_path` for files a producer writes itself (model downloads, converters,
bundles). Both write a temporary file in the destination's directory (same file system, so
the rename is atomic), fsync it, rename it over the old name and fsync the directory, so the
rename itself survives power loss. The gallery adds its writer lock and stale-temp cleanup
on top (:mod:`edgeface.gallery.durable`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeface.errors import EdgefaceError, StorageError

BACKUP_SUFFIX = ".bak"
#: part of every temporary name, so a killed writer's leftovers can be found again
TMP_MARK = ".tmp-"


def backup_path(path: Path) -> Path:
    """Where :func:`atomic_write` keeps the previous generation (``<name>.bak``)."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def tmp_name(path: Path, tag: str = "") -> Path:
    """A fresh hidden temporary name beside ``path`` (``.<name><tag>.tmp-<pid>-<random>``)."""
    return path.with_name(f".{path.name}{tag}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename/creation in ``directory`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` may write less than asked (signals, pipes, quotas): loop until done."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - defensive, POSIX raises instead
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _write_new_file(tmp: Path, data: bytes | memoryview, mode: int) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_backup(path: Path, mode: int) -> None:
    """Make ``<path>.bak`` the current generation, atomically (link, else fsynced copy)."""
    bak_tmp = tmp_name(path, BACKUP_SUFFIX)
    try:
        try:
            os.link(path, bak_tmp)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # vfat & co.: no hard links; copy and fsync instead.
            with open(path, "rb") as src:
                _write_new_file(bak_tmp, src.read(), mode)
        os.replace(bak_tmp, backup_path(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bak_tmp)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | memoryview,
    *,
    backup: bool = False,
    mode: int = 0o600,
    what: str = "file",
) -> None:
    """Replace ``path`` with ``data`` all-or-nothing; with ``backup`` keep the old one as
    ``.bak``. A new file gets ``mode`` (less the umask; private by default).

    Raises :class:`StorageError` naming ``what`` (the old file and its backup unchanged) on
    any OS error.
    """
    p = Path(path)
    tmp = tmp_name(p)
    try:
        _write_new_file(tmp, data, mode)
        if backup and p.exists():
            _keep_backup(p, mode)
        os.replace(tmp, p)
        fsync_dir(p.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason = "no space left on device"
        raise StorageError(
            f"{p}: cannot save {what} ({reason}); the previous version is unchanged"
        ) from exc


@contextmanager
def staged_path(dest: Path) -> Iterator[Path]:
    """Yield a path to write ``dest``'s content to; it becomes ``dest`` only if the block ends
    normally and the file exists.

    The path lives in a private staging directory beside ``dest`` (same file system, so the
    final rename is atomic), which also holds any side files a converter writes. On any
    exception, KeyboardInterrupt included, the staging directory is removed and an existing
    ``dest`` is left untouched. The file is fsynced before the rename, the directory after.
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
        fsync_dir(dest.parent)
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
