"""CFP (Celebrities in Frontal-Profile) verification protocols: frontal-profile and frontal-frontal.

LFW is almost all frontal; CFP-FP pairs a frontal photo with a profile of the same or another
person, which is what a door camera sees when someone walks in at an angle. The set's own
layout is read as released (``Protocol/Pair_list_{F,P}.txt`` and ``Protocol/Split/{FP,FF}/NN/
{same,diff}.txt``). Images are keyed like LFW images, ``("NNN/frontal", 1)``, so the aligned
crops are cached and scored by the same code as LFW (:mod:`edgeface.evaluation.lfw`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeface.aligner import align_face
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.errors import ConfigError
from edgeface.evaluation.lfw import AlignedSet, Pairs, Progress, align_images
from edgeface.imaging import load_image
from edgeface.recognition.pipeline import select_face

#: the second pass over photos where the default cascade found no face. CFP photos are face
#: crops, so the one face is there; MTCNN's default stage thresholds (0.6, 0.7, 0.7) reject
#: many profiles (66 of the 77 dev misses). Measured on those 77: 21 found at (0.5, 0.6, 0.6),
#: 37 at (0.4, 0.5, 0.5), 49 at (0.3, 0.4, 0.4). The report counts these faces separately.
RELAXED_THRESHOLDS = (0.3, 0.4, 0.4)

#: protocol name -> (split folder, pair list of the right-hand image)
PROTOCOLS: dict[str, tuple[str, str]] = {"cfp-fp": ("FP", "P"), "cfp-ff": ("FF", "F")}

Key = tuple[str, int]


def _read_pair_list(path: Path) -> dict[int, Key]:
    """``index -> key`` from ``Pair_list_F.txt`` / ``Pair_list_P.txt``."""
    keys: dict[int, Key] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the CFP pair list ({exc})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            idx, rel = line.split()
            parts = Path(rel).parts  # ../Data/Images/NNN/frontal/01.jpg
            keys[int(idx)] = (f"{parts[-3]}/{parts[-2]}", int(Path(parts[-1]).stem))
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"{path}: line {n} is not 'index path' ({exc})") from exc
    return keys


def image_path(images_dir: Path, key: Key) -> Path:
    """``("001/profile", 3)`` -> ``images_dir/001/profile/03.jpg``."""
    return images_dir / key[0] / f"{key[1]:02d}.jpg"


def read_protocol(root: Path, protocol: str) -> Pairs:
    """The pairs of every fold present under ``root`` (the CFP folder) for ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown CFP protocol '{protocol}' (use {', '.join(PROTOCOLS)})")
    split, right_list = PROTOCOLS[protocol]
    frontal = _read_pair_list(root / "Protocol" / "Pair_list_F.txt")
    right = frontal if right_list == "F" else _read_pair_list(root / "Protocol" / "Pair_list_P.txt")
    fold_dirs = sorted(p for p in (root / "Protocol" / "Split" / split).glob("[0-9][0-9]"))
    if not fold_dirs:
        raise ConfigError(f"{root}: no folds under Protocol/Split/{split}")
    left_keys: list[Key] = []
    right_keys: list[Key] = []
    same: list[bool] = []
    folds: list[int] = []
    for fold, fold_dir in enumerate(fold_dirs):
        for name, is_same in (("same.txt", True), ("diff.txt", False)):
            path = fold_dir / name
            try:
                lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
                pairs = [tuple(int(v) for v in ln.split(",")) for ln in lines]
                left_keys += [frontal[i] for i, _ in pairs]
                right_keys += [right[j] for _, j in pairs]
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"{path}: not a CFP split file ({exc})") from exc
            same += [is_same] * len(pairs)
            folds += [fold] * len(pairs)
    return Pairs(left_keys, right_keys, np.array(same), np.array(folds), len(fold_dirs))


def align_cfp(
    images_dir: Path,
    keys: Sequence[Key],
    detector: MTCNNDetector,
    progress: Progress | None = None,
) -> AlignedSet:
    """Detect and align, frontal and profile photos separately.

    Separately because a photo with no face found is aligned with the mean landmarks of its
    own pose (a profile's eyes sit elsewhere than a frontal face's).
    """
    parts: list[AlignedSet] = []
    for pose in ("frontal", "profile"):
        subset = [k for k in keys if k[0].endswith(f"/{pose}")]
        if subset:
            parts.append(align_images(images_dir, subset, detector, progress, image_path))
    aligned = AlignedSet(
        [k for p in parts for k in p.keys],
        np.concatenate([p.crops for p in parts]),
        np.concatenate([p.found for p in parts]),
        [t for p in parts for t in p.ms_detect],
        [t for p in parts for t in p.ms_align],
    )
    return retry_misses(aligned, images_dir)


def retry_misses(
    aligned: AlignedSet,
    images_dir: Path,
    thresholds: tuple[float, float, float] = RELAXED_THRESHOLDS,
) -> AlignedSet:
    """Detect again, with :data:`RELAXED_THRESHOLDS`, where the default cascade found no face;
    faces found so replace the mean-landmark fallback crop and are marked in ``relaxed``."""
    if aligned.relaxed is not None:
        return aligned  # already done for this set
    relaxed = np.zeros(len(aligned.keys), bool)
    detector = MTCNNDetector(DetectorConfig(thresholds=thresholds))
    crops, found = aligned.crops.copy(), aligned.found.copy()
    for i in np.nonzero(~aligned.found)[0]:
        img = load_image(image_path(images_dir, aligned.keys[i]))
        face = select_face(detector.detect(img), img.shape, "central")
        if face is not None:
            crops[i] = align_face(img, face.landmarks).crop
            found[i] = relaxed[i] = True
    return AlignedSet(
        aligned.keys, crops, found, aligned.ms_detect, aligned.ms_align, relaxed=relaxed
    )
