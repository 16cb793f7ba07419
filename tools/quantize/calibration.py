"""Calibration sets: the real inputs a quantizer measures activation ranges on.

For MobileFaceNet the inputs are aligned 112x112 faces made by *our* detector and aligner,
because INT8 ranges fitted to differently aligned (or unaligned) crops are ranges of a
different input distribution. Building the set runs the detector over a directory of photos,
which takes minutes on a Pi-class CPU, so the result is cached as a ``.npy`` keyed by the
image list, the requested size and the detector; the cache lives in the user cache directory
and is never committed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, EdgefaceError, NoFaceError
from edgeface.modelstore.resolver import user_cache_dir
from edgeface.storage import staged_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".gif", ""}

#: rgb uint8 image -> aligned 112x112x3 uint8 crops (at most one per face)
FaceCropper = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class CalibrationSet:
    """Aligned faces plus a description that goes into the artifact manifest."""

    faces: np.ndarray  # (N, 112, 112, 3) uint8 RGB
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.faces.shape[0])


def default_cache_dir() -> Path:
    return user_cache_dir().parent / "calibration"


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted so the selection is reproducible."""
    if not root.is_dir():
        raise ConfigError(f"calibration directory {root} does not exist or is not a directory")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    # extension-less files are only images if they are not obviously text (Yale's GIFs have none)
    return sorted(p for p in files if p.suffix or p.stat().st_size > 1024)


def mtcnn_cropper(largest_only: bool = True) -> FaceCropper:
    """Our own detector + aligner: the calibration faces look exactly like runtime faces."""
    from edgeface.aligner import align_face
    from edgeface.detector import DetectorConfig, MTCNNDetector

    detector = MTCNNDetector(DetectorConfig())

    def crop(rgb: np.ndarray) -> list[np.ndarray]:
        faces = detector.detect(rgb)
        if largest_only and faces:
            faces = [max(faces, key=lambda f: f.area)]
        return [align_face(rgb, f.landmarks, size=112).crop for f in faces]

    return crop


def _cache_key(files: Sequence[Path], root: Path, count: int, seed: int, cropper_id: str) -> str:
    h = hashlib.sha256(f"v1|{count}|{seed}|{cropper_id}".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _save_atomic(dest: Path, arr: np.ndarray) -> None:
    with staged_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def build_calibration_set(
    image_dir: Path,
    *,
    count: int = 500,
    min_faces: int = 50,
    seed: int = 0,
    cache_dir: Path | None = None,
    cropper: FaceCropper | None = None,
    cropper_id: str = "edgeface-mtcnn+align112",
    progress: bool = True,
) -> CalibrationSet:
    """Up to ``count`` aligned faces (one per image) from a shuffled walk over ``image_dir``.

    Unreadable files are skipped and counted. Fewer than ``min_faces`` faces is an error
    (NoFaceError): ranges fitted to a handful of faces clip the rest.
    """
    from edgeface.imaging import load_image

    root = Path(image_dir)
    files = list_images(root)
    if not files:
        raise NoFaceError(f"calibration directory {root} contains no image files")
    key = _cache_key(files, root, count, seed, cropper_id)
    cache = (cache_dir or default_cache_dir()) / f"faces-{key[:20]}.npy"
    description: dict[str, Any] = {
        "kind": "aligned-faces",
        "directory": str(root),
        "images_available": len(files),
        "requested": count,
        "seed": seed,
        "cropper": cropper_id,
        "cache": str(cache),
        "key": key,
    }
    if cache.is_file():
        try:
            faces = np.load(cache, allow_pickle=False)
            if faces.ndim == 4 and faces.shape[1:] == (112, 112, 3) and faces.dtype == np.uint8:
                return CalibrationSet(faces, {**description, "faces": len(faces), "cached": True})
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt
    cropper = cropper or mtcnn_cropper()
    order = list(files)
    random.Random(seed).shuffle(order)
    crops: list[np.ndarray] = []
    skipped = scanned = 0
    bar = _progress(total=count, desc="calibration faces", enabled=progress)
    try:
        for path in order:
            if len(crops) >= count:
                break
            scanned += 1
            try:
                rgb = load_image(path)
            except EdgefaceError:
                skipped += 1
                continue
            found = cropper(rgb)[:1]
            crops.extend(found)
            bar.update(len(found))
    finally:
        bar.close()
    if len(crops) < min_faces:
        raise NoFaceError(
            f"calibration directory {root}: found {len(crops)} face(s) in {scanned} image(s) "
            f"({skipped} unreadable); at least {min_faces} are needed"
        )
    faces = np.stack(crops).astype(np.uint8)
    _save_atomic(cache, faces)
    description.update(faces=len(faces), images_scanned=scanned, unreadable=skipped, cached=False)
    return CalibrationSet(faces, description)


def preprocess_faces(crops: np.ndarray, preprocessing: dict[str, Any], layout: str) -> np.ndarray:
    """uint8 RGB NHWC crops -> the float input the manifest's preprocessing describes."""
    x = crops.astype(np.float32) * np.float32(preprocessing.get("scale", 1.0 / 255.0))
    mean = np.asarray(preprocessing.get("mean", 0.0), dtype=np.float32)
    std = np.asarray(preprocessing.get("std", 1.0), dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x)


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NullBar()
    return tqdm(total=total, desc=desc, unit="face", leave=False)
