"""``edgeface models fetch``: put every manifest file into the cache, checked and atomically.

A file already present anywhere on the search path with the right sha256 is left alone, so
on a development machine with ``../shared/models`` this only builds the derived files.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from edgeface.errors import ModelError
from edgeface.modelstore.manifest import get_entry, load_manifest
from edgeface.modelstore.resolver import ModelResolver, sha256_file, user_cache_dir
from edgeface.storage import staged_path

Log = Callable[[str], None]


def atomic_write_from(dest: Path, produce: Callable[[Path], None]) -> None:
    """Run ``produce(tmp)`` then rename tmp to ``dest``: a crash never leaves a half file."""
    with staged_path(dest) as tmp:
        produce(tmp)


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        while block := resp.read(1 << 20):
            out.write(block)


def fetch_model(
    name: str,
    *,
    resolver: ModelResolver | None = None,
    cache_dir: Path | None = None,
    log: Log = print,
) -> Path:
    """Make ``name`` available and verified; return its path."""
    resolver = resolver or ModelResolver.default()
    entry = get_entry(name)
    existing = resolver.find(name)
    if existing is not None:
        try:
            resolver.check(entry, existing)
            log(f"{name}: ok ({existing})")
            return existing
        except ModelError as exc:
            log(f"{name}: {exc}; fetching again")
    dest = (cache_dir or user_cache_dir()) / entry.file
    kind = entry.source_kind
    produce: Callable[[Path], None]
    if kind == "url":
        url = str(entry.source["url"])
        log(f"{name}: downloading {url}")

        def produce(tmp: Path) -> None:
            try:
                _download(url, tmp)
            except OSError as exc:
                raise ModelError(f"{name}: download of {url} failed ({exc}); no network?") from exc

    elif kind in ("pypi", "derived"):
        from edgeface_tools.converters import build_model  # tools extra; imported on demand

        def source_path(src: str) -> Path:
            return fetch_model(src, resolver=resolver, cache_dir=cache_dir, log=log)

        log(f"{name}: building from its {kind} source")

        def produce(tmp: Path) -> None:
            build_model(entry, source_path, tmp)

    else:
        raise ModelError(f"{name}: unknown source kind '{kind}' in the manifest")

    def produce_checked(tmp: Path) -> None:
        produce(tmp)
        digest = sha256_file(tmp)
        if digest != entry.sha256:
            raise ModelError(
                f"{name}: the produced file has sha256 {digest}, the manifest pins {entry.sha256}"
            )

    atomic_write_from(dest, produce_checked)
    log(f"{name}: ok ({dest})")
    return dest


def fetch_all(names: list[str] | None = None, **kwargs: object) -> list[Path]:
    return [fetch_model(n, **kwargs) for n in (names or sorted(load_manifest()))]  # type: ignore[arg-type]
