"""Find a model file and prove it is the one the manifest pins.

Search order (first hit wins): an explicit path, ``$EDGEFACE_MODELS_DIR``, the user cache
(``$EDGEFACE_CACHE_DIR`` or ``$XDG_CACHE_HOME/edgeface/models``), the active release's
``models/`` (``/var/lib/edgeface/current/models``, installed by ``edgeface bundle install``;
the root is ``$EDGEFACE_DEVICE_ROOT`` when set), the system directory
``/var/lib/edgeface/models``, then ``../shared/models`` beside the source checkout or the
current directory (development only). The sha256 is checked before use, so a truncated
download or a swapped file never reaches the detector or embedder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeface.errors import ModelError
from edgeface.modelstore.manifest import ModelEntry, get_entry, load_manifest

SYSTEM_MODELS_DIR = Path("/var/lib/edgeface/models")
DEVICE_ROOT = Path("/var/lib/edgeface")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def user_cache_dir() -> Path:
    """Where ``edgeface models fetch`` writes; overridable for tests and read-only systems."""
    explicit = os.environ.get("EDGEFACE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeface" / "models"


def release_models_dir(release: Path | None = None) -> Path:
    """``models/`` of a release directory (default: the device's ``current`` release): bundles
    store the detector files there under their manifest paths, sha256-checked as usual."""
    if release is None:
        release = Path(os.environ.get("EDGEFACE_DEVICE_ROOT") or DEVICE_ROOT) / "current"
    return release / "models"


def search_dirs() -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get("EDGEFACE_MODELS_DIR")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(user_cache_dir())
    dirs.append(release_models_dir())
    dirs.append(SYSTEM_MODELS_DIR)
    for dev in (_REPO_ROOT.parent / "shared" / "models", Path.cwd().parent / "shared" / "models"):
        if dev not in dirs:
            dirs.append(dev)
    return dirs


@dataclass
class ModelResolver:
    """Resolves manifest names to verified paths; caches the hash of files already checked."""

    dirs: list[Path]
    verify: bool = True

    def __post_init__(self) -> None:
        self._verified: dict[tuple[Path, int, int], str] = {}

    @classmethod
    def default(cls) -> ModelResolver:
        return cls(dirs=search_dirs())

    def candidates(self, entry: ModelEntry) -> Iterable[Path]:
        for d in self.dirs:
            yield d / entry.file

    def find(self, name: str) -> Path | None:
        """The first existing file for ``name`` (unverified), or None."""
        entry = get_entry(name)
        return next((p for p in self.candidates(entry) if p.is_file()), None)

    def resolve(self, name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
        entry = get_entry(name)
        if explicit is not None:
            path = Path(explicit)
            if not path.is_file():
                raise ModelError(f"model file {path} does not exist")
            self.check(entry, path)
            return path
        path = next((p for p in self.candidates(entry) if p.is_file()), None)
        if path is None:
            looked = ", ".join(str(d) for d in self.dirs)
            raise ModelError(
                f"model '{name}' ({entry.file}) not found; looked in {looked}. "
                f"Run: edgeface models fetch {name}"
            )
        self.check(entry, path)
        return path

    def check(self, entry: ModelEntry, path: Path) -> None:
        """Raise ModelError unless ``path`` has the manifest's sha256."""
        if not self.verify:
            return
        st = path.stat()
        key = (path.resolve(), st.st_size, st.st_mtime_ns)
        digest = self._verified.get(key) or sha256_file(path)
        if digest != entry.sha256:
            raise ModelError(
                f"model file {path} has sha256 {digest[:16]}..., the manifest expects "
                f"{entry.sha256[:16]}... for '{entry.name}'; the file is corrupt or not this "
                f"model. Delete it and run: edgeface models fetch {entry.name}"
            )
        self._verified[key] = digest


_DEFAULT: ModelResolver | None = None


def resolve_model(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Module-level convenience over a shared default resolver."""
    global _DEFAULT
    if _DEFAULT is None or _DEFAULT.dirs != search_dirs():
        _DEFAULT = ModelResolver.default()
    return _DEFAULT.resolve(name, explicit)


def all_entries() -> dict[str, ModelEntry]:
    return load_manifest()
