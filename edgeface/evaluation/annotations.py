"""Ground-truth face boxes from Pascal VOC XML and dlib imglab XML.

Why a module of its own: the evaluation must not care where the boxes came from, so both
formats become the same :class:`ImageAnnotation` (pixel boxes ``x1, y1, x2, y2`` plus a
per-box *ignore* flag). Coordinates are taken as written (VOC ``xmin..xmax``; dlib
``left, top, left+width, top+height``) without the VOC devkit's ``+1`` inclusive-pixel
convention; at IoU 0.4/0.5 on faces >= 20 px the difference is below 5 % of a box side and
detectors are not trained on either convention.

Bad input becomes :class:`~edgeface.errors.ConfigError` naming the file: a missing folder or
file, XML that does not parse, a box without numeric coordinates, or an empty box.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError


@dataclass(frozen=True)
class ImageAnnotation:
    """The boxed faces of one image.

    ``ignore[i]`` marks a box that neither counts as a face to find nor turns a detection on it
    into a false positive (VOC ``difficult=1``, dlib ``ignore='1'``).
    """

    image: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float64, x1 y1 x2 y2
    ignore: np.ndarray  # (N,) bool
    labels: tuple[str, ...] = field(default=())

    @property
    def n_counted(self) -> int:
        """Number of boxes that count for recall."""
        return int((~self.ignore).sum())


def _parse_xml(path: Path) -> ET.Element:
    if not path.exists():
        raise ConfigError(f"{path}: no such annotation file")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"{path}: malformed XML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _num(value: str | None, what: str, path: Path) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {what} is missing or not a number ({value!r})") from None


def _as_arrays(boxes: list[list[float]], ignore: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return b, np.asarray(ignore, dtype=bool).reshape(-1)


def _check_box(box: list[float], path: Path, where: str) -> None:
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ConfigError(f"{path}: {where} is empty or inverted ({box})")


def parse_voc_xml(path: str | Path, images_dir: str | Path | None = None) -> ImageAnnotation:
    """One Pascal VOC annotation file. ``images_dir`` defaults to ``<xml dir>/../images``."""
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "annotation":
        raise ConfigError(f"{path}: not a Pascal VOC annotation (root <{root.tag}>)")
    filename = root.findtext("filename")
    if not filename:
        raise ConfigError(f"{path}: <filename> is missing")
    size = root.find("size")
    width = int(_num(size.findtext("width") if size is not None else None, "<size><width>", path))
    height = int(
        _num(size.findtext("height") if size is not None else None, "<size><height>", path)
    )
    boxes: list[list[float]] = []
    ignore: list[bool] = []
    labels: list[str] = []
    for i, obj in enumerate(root.iter("object")):
        bb = obj.find("bndbox")
        if bb is None:
            raise ConfigError(f"{path}: <object> #{i + 1} has no <bndbox>")
        box = [_num(bb.findtext(k), f"object #{i + 1} <{k}>", path) for k in _VOC_KEYS]
        _check_box(box, path, f"object #{i + 1}")
        boxes.append(box)
        ignore.append((obj.findtext("difficult") or "0").strip() == "1")
        labels.append((obj.findtext("name") or "").strip())
    b, ig = _as_arrays(boxes, ignore)
    base = Path(images_dir) if images_dir is not None else path.parent.parent / "images"
    return ImageAnnotation(base / filename, width, height, b, ig, tuple(labels))


_VOC_KEYS = ("xmin", "ymin", "xmax", "ymax")


def load_voc_dir(annotations_dir: str | Path, images_dir: str | Path) -> list[ImageAnnotation]:
    """Every ``*.xml`` in a VOC ``annotations`` folder, in natural (numeric-aware) name order."""
    annotations_dir = Path(annotations_dir)
    if not annotations_dir.is_dir():
        raise ConfigError(f"{annotations_dir}: no such annotation folder")
    files = sorted(annotations_dir.glob("*.xml"), key=_natural_key)
    if not files:
        raise ConfigError(f"{annotations_dir}: no *.xml annotation files")
    return [parse_voc_xml(f, images_dir) for f in files]


def parse_dlib_xml(path: str | Path) -> list[ImageAnnotation]:
    """A dlib imglab dataset file (``<image file=..><box top left width height/>``).

    Image paths are relative to the XML file's folder, as imglab writes them.
    """
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "dataset" or root.find("images") is None:
        raise ConfigError(f"{path}: not a dlib imglab dataset (<dataset><images> missing)")
    out: list[ImageAnnotation] = []
    for img in root.find("images").iter("image"):  # type: ignore[union-attr]
        name = img.get("file")
        if not name:
            raise ConfigError(f"{path}: <image> without a file attribute")
        boxes: list[list[float]] = []
        ignore: list[bool] = []
        for j, bx in enumerate(img.iter("box")):
            where = f"{name} box #{j + 1}"
            top = _num(bx.get("top"), f"{where} top", path)
            left = _num(bx.get("left"), f"{where} left", path)
            w = _num(bx.get("width"), f"{where} width", path)
            h = _num(bx.get("height"), f"{where} height", path)
            box = [left, top, left + w, top + h]
            _check_box(box, path, where)
            boxes.append(box)
            ignore.append(bx.get("ignore", "0").strip() == "1")
        b, ig = _as_arrays(boxes, ignore)
        width = int(_num(img.get("width"), f"{name} width", path)) if img.get("width") else 0
        height = int(_num(img.get("height"), f"{name} height", path)) if img.get("height") else 0
        out.append(ImageAnnotation(path.parent / name, width, height, b, ig, ("face",) * len(b)))
    return out


def _natural_key(p: Path) -> tuple[str, int, str]:
    stem = p.stem
    digits = len(stem) - len(stem.rstrip("0123456789"))
    head, tail = stem[: len(stem) - digits], stem[len(stem) - digits :]
    return (head, int(tail) if tail else -1, p.name)
