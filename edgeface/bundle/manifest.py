"""The bundle manifest: what a release contains and where it may run.

Checked only after its signature (:func:`edgeface.bundle.envelope.verify`); :func:`parse`
validates the shape so that a genuine but malformed manifest (a builder bug) is one clear
error, and :func:`check_policy` applies the device's rules: expiry, minimum edgeface version,
target architecture and the anti-rollback counter.
"""

from __future__ import annotations

import platform
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from edgeface import __version__
from edgeface.bundle.errors import BundleError

MANIFEST_FORMAT = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    raw: dict[str, Any]
    name: str
    version: int
    created: float
    expires: float | None
    min_edgeface: str
    arch: str
    backend: str
    files: dict[str, FileEntry]

    @property
    def embedder(self) -> dict[str, Any]:
        return dict(self.raw["embedder"])

    @property
    def detector(self) -> dict[str, Any]:
        return dict(self.raw["detector"])

    @property
    def selftest(self) -> dict[str, Any]:
        return dict(self.raw["selftest"])

    def summary(self) -> dict[str, Any]:
        emb = self.embedder
        return {
            "name": self.name,
            "version": self.version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "expires": None
            if self.expires is None
            else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires)),
            "min_edgeface": self.min_edgeface,
            "target": {"arch": self.arch, "backend": self.backend},
            "key_id": self.raw["key_id"],
            "embedder": {
                "file": emb["file"],
                "sha256": self.files[emb["file"]].sha256,
                "model": emb["model"],
                "flip": emb["flip"],
            },
            "detector": self.detector,
            "float_source_sha256": self.raw.get("float_source_sha256"),
            "files": {p: {"sha256": f.sha256, "size": f.size} for p, f in self.files.items()},
        }


def safe_member_name(name: str) -> bool:
    """A relative POSIX path without ``..``, empty or hidden-trick parts."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    parts = PurePosixPath(name).parts
    return all(p not in ("", ".", "..") for p in parts) and PurePosixPath(name).as_posix() == name


def parse(raw: dict[str, Any], where: str) -> Manifest:
    try:
        if int(raw["format"]) != MANIFEST_FORMAT:
            raise BundleError(f"{where}: manifest format {raw['format']} is not supported")
        files = {}
        for p, f in dict(raw["files"]).items():
            if not safe_member_name(p):
                raise BundleError(f"{where}: manifest names an unsafe path {p!r}")
            sha, size = str(f["sha256"]), int(f["size"])
            if not _HEX64.match(sha) or size < 0:
                raise BundleError(f"{where}: manifest entry {p!r} is malformed")
            files[p] = FileEntry(p, sha, size)
        m = Manifest(
            raw=raw,
            name=str(raw["name"]),
            version=int(raw["version"]),
            created=float(raw["created"]),
            expires=None if raw.get("expires") is None else float(raw["expires"]),
            min_edgeface=str(raw["min_edgeface"]),
            arch=str(raw["target"]["arch"]),
            backend=str(raw["target"]["backend"]),
            files=files,
        )
        for ref in (m.embedder["file"], m.embedder["calibration"], m.selftest["vectors"]):
            if ref not in files:
                raise BundleError(f"{where}: manifest refers to {ref!r}, which it does not list")
        for ref in m.detector["files"].values():
            if ref not in files:
                raise BundleError(f"{where}: manifest refers to {ref!r}, which it does not list")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from exc
    if m.version < 1:
        raise BundleError(f"{where}: version must be >= 1, got {m.version}")
    return m


def version_tuple(v: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", v.split("+")[0])
    return tuple(int(n) for n in nums[:3]) or (0,)


def check_policy(
    m: Manifest,
    where: str,
    *,
    highest: int,
    allow_downgrade: bool = False,
    now: float | None = None,
    arch: str | None = None,
) -> None:
    """Refuse an expired bundle, one for a newer edgeface or another CPU, or one not newer than
    ``highest`` (the device's anti-rollback counter) unless ``allow_downgrade``."""
    now = time.time() if now is None else now
    if m.expires is not None and now >= m.expires:
        raise BundleError(
            f"{where}: expired on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(m.expires))}"
        )
    if version_tuple(m.min_edgeface) > version_tuple(__version__):
        raise BundleError(
            f"{where}: needs edgeface >= {m.min_edgeface}, this device runs {__version__}"
        )
    here = arch or platform.machine()
    if m.arch not in ("any", here):
        raise BundleError(f"{where}: built for {m.arch}, this device is {here}")
    if m.version <= highest and not allow_downgrade:
        raise BundleError(
            f"{where}: version {m.version} is not newer than {highest}, the highest this device "
            "has installed (anti-rollback); use --allow-downgrade if you mean it"
        )
