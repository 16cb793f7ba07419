"""pyproject.toml lists its packages explicitly (models/ and tools/ install under other import
names), so a new package folder that is not listed would be missing from every wheel while
the editable development install still finds it. This test catches that."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders(root: Path, import_name: str) -> set[str]:
    found = set()
    for init in root.rglob("__init__.py"):
        rel = init.parent.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        found.add(".".join((import_name, *rel.parts)))
    return found


def _data_folders(cfg: dict, dirs: dict[str, Path]) -> set[str]:
    """Data-only packages (calibration JSON, the kiosk's web files): folders without
    ``__init__.py`` that are listed with their own package-data, so that setuptools neither
    warns about them nor leaves them out."""
    found = set()
    for name in cfg.get("package-data", {}):
        top, *rest = name.split(".")
        if top in dirs and rest and dirs[top].joinpath(*rest).is_dir():
            found.add(name)
    return found


def test_every_package_folder_is_listed() -> None:
    cfg = _setuptools()
    listed = set(cfg["packages"])
    dirs = {"edgeface": REPO / "edgeface"}
    dirs.update({name: REPO / folder for name, folder in cfg["package-dir"].items()})
    on_disk: set[str] = set()
    for import_name, folder in dirs.items():
        on_disk |= _package_folders(folder, import_name)
    on_disk |= _data_folders(cfg, dirs)
    assert on_disk - listed == set(), "package folders missing from pyproject.toml"
    assert listed - on_disk == set(), "pyproject.toml lists packages that do not exist"
