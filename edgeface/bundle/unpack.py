"""Unpack a verified bundle's tar payload into a staging directory, trusting nothing.

The signature already covers the payload, so everything here is defence in depth against a
compromised build machine or a bug: only regular files whose names the manifest lists are
written (no absolute paths, no ``..``, no links, devices, FIFOs or directories as members, no
duplicates), each at most the manifest's size (no tar bombs: extraction stops at the declared
size) and with the manifest's sha256; a missing file fails too. Files are written with
``O_EXCL`` and fsynced.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from edgeface.bundle.envelope import Envelope
from edgeface.bundle.errors import BundleError
from edgeface.bundle.manifest import Manifest, safe_member_name
from edgeface.gallery.durable import fsync_dir


class _Window(io.RawIOBase):
    """The payload region of the bundle file as a stream that ends where the payload ends."""

    def __init__(self, f: io.BufferedReader, size: int) -> None:
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = self.f.read(n)
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


def extract(env: Envelope, m: Manifest, dest: Path) -> None:
    """Write every manifest file into the empty directory ``dest``, or raise BundleError."""
    where = str(env.path)
    seen: set[str] = set()
    dirs: set[Path] = {dest}
    try:
        with open(env.path, "rb") as f:
            f.seek(env.payload_offset)
            stream = io.BufferedReader(_Window(f, env.payload_size))
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = member.name
                    if not safe_member_name(name):
                        raise BundleError(f"{where}: unsafe member path {name!r}")
                    if not member.isreg():
                        kind = (
                            "link" if member.issym() or member.islnk()
                            else "device" if member.ischr() or member.isblk()
                            else "directory" if member.isdir()
                            else "special file"
                        )  # fmt: skip
                        raise BundleError(f"{where}: member {name!r} is a {kind}, not a file")
                    entry = m.files.get(name)
                    if entry is None:
                        raise BundleError(f"{where}: member {name!r} is not in the manifest")
                    if name in seen:
                        raise BundleError(f"{where}: member {name!r} appears twice")
                    if member.size != entry.size:
                        raise BundleError(
                            f"{where}: member {name!r} is {member.size} bytes, the manifest "
                            f"says {entry.size}"
                        )
                    seen.add(name)
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    dirs.add(target.parent)
                    src = tar.extractfile(member)
                    assert src is not None
                    h = hashlib.sha256()
                    left = entry.size
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    with os.fdopen(fd, "wb") as out:
                        while left:
                            block = src.read(min(1 << 20, left))
                            if not block:
                                raise BundleError(f"{where}: member {name!r} is truncated")
                            h.update(block)
                            out.write(block)
                            left -= len(block)
                        out.flush()
                        os.fsync(out.fileno())
                    if h.hexdigest() != entry.sha256:
                        raise BundleError(f"{where}: member {name!r} has the wrong sha256")
    except tarfile.TarError as exc:
        raise BundleError(f"{where}: corrupt payload ({exc})") from exc
    except OSError as exc:
        raise BundleError(f"{where}: cannot unpack into {dest} ({exc.strerror or exc})") from exc
    missing = sorted(set(m.files) - seen)
    if missing:
        raise BundleError(f"{where}: payload lacks {missing[0]} (listed in the manifest)")
    for d in sorted(dirs, key=lambda p: -len(p.parts)):
        fsync_dir(d)
