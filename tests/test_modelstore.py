"""Manifest, resolver and fetch: sha256 checks, clear messages, reproducible derived files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeface.errors import ModelError, StorageError
from edgeface.modelstore import ModelResolver, load_manifest, resolve_model, sha256_file
from edgeface.modelstore.fetch import atomic_write_from, fetch_model

REPO = Path(__file__).resolve().parents[1]


def test_manifest_entries_are_complete() -> None:
    entries = load_manifest()
    assert {"mobilefacenet", "mobilefacenet-dyn", "mtcnn", "yunet"} <= set(entries)
    for e in entries.values():
        assert len(e.sha256) == 64 and e.license and e.source_kind in {"url", "pypi", "derived"}
        if e.source_kind == "url":
            # pinned to a commit, never a branch
            assert any(len(part) == 40 for part in e.source["url"].split("/"))


def test_every_model_resolves_with_its_pinned_hash(models_ready: None) -> None:
    for name, entry in load_manifest().items():
        assert sha256_file(resolve_model(name)) == entry.sha256


def test_wrong_file_names_itself_and_the_fix(tmp_path: Path, models_ready: None) -> None:
    models = tmp_path / "models"
    target = models / load_manifest()["yunet"].file
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the model")
    resolver = ModelResolver(dirs=[models])
    with pytest.raises(ModelError) as info:
        resolver.resolve("yunet")
    msg = str(info.value)
    assert str(target) in msg and "edgeface models fetch yunet" in msg


def test_missing_model_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found; looked in .*edgeface models fetch mtcnn"):
        ModelResolver(dirs=[tmp_path]).resolve("mtcnn")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        ModelResolver(dirs=[tmp_path]).resolve("nope")


def test_explicit_path_is_checked_too(tmp_path: Path, models_ready: None) -> None:
    copy = tmp_path / "yunet.onnx"
    shutil.copy(resolve_model("yunet"), copy)
    assert ModelResolver(dirs=[]).resolve("yunet", copy) == copy
    copy.write_bytes(copy.read_bytes()[:-1])
    with pytest.raises(ModelError, match="sha256"):
        ModelResolver(dirs=[]).resolve("yunet", copy)


def test_derived_dynamic_batch_model_is_rebuilt_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_ready: None
) -> None:
    monkeypatch.setenv("EDGEFACE_CACHE_DIR", str(tmp_path))
    source = resolve_model("mobilefacenet")
    before = sha256_file(source)
    resolver = ModelResolver(dirs=[tmp_path, source.parents[1]])
    built = fetch_model(
        "mobilefacenet-dyn", resolver=resolver, cache_dir=tmp_path, log=lambda m: None
    )
    assert built.parent.parent == tmp_path
    assert sha256_file(built) == load_manifest()["mobilefacenet-dyn"].sha256
    assert sha256_file(source) == before, "building a derived model must never touch its source"


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "m.bin"

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise ModelError("interrupted")

    with pytest.raises(ModelError):
        atomic_write_from(dest, fail)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_is_a_storage_error(tmp_path: Path) -> None:
    # a cache path that runs through a regular file cannot be created, even by root
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write"):
        atomic_write_from(blocker / "sub" / "m.bin", lambda tmp: tmp.write_bytes(b"x"))


def test_every_package_folder_is_listed_in_pyproject() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for init in sorted((REPO / "edgeface").rglob("__init__.py")):
        pkg = ".".join(init.parent.relative_to(REPO).parts)
        assert f'"{pkg}"' in text, f"{pkg} missing from [tool.setuptools] packages"
    for init in sorted((REPO / "tools").rglob("__init__.py")):
        rel = init.parent.relative_to(REPO / "tools").parts
        pkg = ".".join(("edgeface_tools", *rel))
        assert f'"{pkg}"' in text, f"{pkg} missing from [tool.setuptools] packages"
