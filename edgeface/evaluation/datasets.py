"""Where the evaluation sets live inside the shared data folder, and their default settings.

Why a table: ``edgeface eval detect`` and the tests must agree on the file layout and on the
IoU threshold each set is scored at; one place avoids two slightly different copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.evaluation.annotations import ImageAnnotation, load_voc_dir, parse_dlib_xml

#: environment variable naming the data folder (the one holding ``lfw/`` and ``detection/``)
DATA_ENV = "EDGEFACE_DATA_DIR"


@dataclass(frozen=True)
class BoxedSet:
    """A detection set with boxed ground truth."""

    name: str
    iou_threshold: float
    description: str
    load: Callable[[Path], list[ImageAnnotation]]


def _load_masks(data: Path) -> list[ImageAnnotation]:
    base = data / "detection" / "masks"
    return load_voc_dir(base / "annotations", base / "images")


def _load_dlib(data: Path) -> list[ImageAnnotation]:
    base = data / "detection" / "dlib_faces"
    if not base.is_dir():
        raise ConfigError(f"{base}: no such dlib faces folder")
    return parse_dlib_xml(base / "training.xml") + parse_dlib_xml(base / "testing.xml")


BOXED_SETS: dict[str, BoxedSet] = {
    "dlib": BoxedSet(
        "dlib", 0.4, "dlib example faces (PASCAL VOC photos, tight square boxes)", _load_dlib
    ),
    "masks": BoxedSet("masks", 0.5, "Kaggle face-mask street photos (Pascal VOC XML)", _load_masks),
}

#: name of the LFW detection-rate "set" (no boxes: one central face per image)
LFW = "lfw"
ALL_SETS: tuple[str, ...] = (*BOXED_SETS, LFW)


def lfw_images_dir(data: Path) -> Path:
    return data / "lfw" / "images"


def find_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``explicit``, else ``$EDGEFACE_DATA_DIR``, else ``../shared/data`` next
    to the working directory or next to this source checkout."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_dir():
            raise ConfigError(f"{p}: no such data folder")
        return p
    env = os.environ.get(DATA_ENV)
    if env:
        p = Path(env)
        if not p.is_dir():
            raise ConfigError(f"{p}: no such data folder (from ${DATA_ENV})")
        return p
    candidates = [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[2].parent / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    raise ConfigError(
        f"no data folder found (looked in {', '.join(str(c) for c in candidates)}); "
        f"pass --data DIR or set ${DATA_ENV}"
    )
