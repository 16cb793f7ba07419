"""Typed view of ``models/manifest.toml`` (installed as the ``edgeface_models`` package)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError, ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class ModelEntry:
    """One model file: where it lives relative to a models directory and how to get it."""

    name: str
    file: str
    sha256: str
    license: str
    description: str
    source: dict[str, Any]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    #: models whose embeddings can be compared share this id (float and INT8 variants do)
    embedding_space: str | None = None

    @property
    def source_kind(self) -> str:
        return str(self.source.get("kind", ""))


def manifest_path() -> Path:
    """Path of the packaged manifest file."""
    return Path(str(resources.files("edgeface_models").joinpath("manifest.toml")))


@lru_cache(maxsize=4)
def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    """Parse the manifest; a malformed one is a packaging bug, reported as ConfigError."""
    p = path or manifest_path()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read model manifest ({exc})") from exc
    entries: dict[str, ModelEntry] = {}
    for name, spec in raw.get("models", {}).items():
        try:
            entries[name] = ModelEntry(
                name=name,
                file=spec["file"],
                sha256=spec["sha256"].lower(),
                license=spec.get("license", "unknown"),
                description=spec.get("description", ""),
                source=dict(spec["source"]),
                preprocessing=dict(spec.get("preprocessing", {})),
                size=spec.get("size"),
                embedding_space=spec.get("embedding_space"),
            )
        except KeyError as exc:
            raise ConfigError(f"{p}: model '{name}' lacks field {exc}") from exc
    return entries


def get_entry(name: str, manifest: dict[str, ModelEntry] | None = None) -> ModelEntry:
    entries = manifest if manifest is not None else load_manifest()
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(sorted(entries))
        raise ModelError(f"unknown model '{name}' (the manifest has: {known})") from None
