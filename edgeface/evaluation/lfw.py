"""LFW protocol: pairs file, aligned crops for every image, scores, and the open-set 1:N run.

The work is split so that expensive parts are done once: ``align_images`` runs our detector
and aligner over every image (the crops can be cached and reused by every embedder variant,
e.g. the INT8 report), ``embed_crops`` runs one embedder, and the scoring functions only do
arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.aligner import align_face
from edgeface.detector import MTCNNDetector
from edgeface.embedder import Embedder
from edgeface.errors import ConfigError
from edgeface.imaging import load_image
from edgeface.recognition.calibration import threshold_for_far
from edgeface.recognition.pipeline import select_face

Progress = Callable[[Iterable[int], str, int], Iterable[int]]


@dataclass(frozen=True)
class Pairs:
    """LFW View-2 pairs: image keys ``(name, number)``, same/different, fold per pair."""

    left: list[tuple[str, int]]
    right: list[tuple[str, int]]
    same: np.ndarray
    folds: np.ndarray
    n_folds: int

    def images(self) -> list[tuple[str, int]]:
        return sorted(set(self.left) | set(self.right))


def read_pairs(path: Path) -> Pairs:
    """Parse a pairs file whose header is ``<folds> <pairs per class per fold>``."""
    try:
        lines = [
            ln.split() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()
        ]
        n_folds, per_class = int(lines[0][0]), int(lines[0][1])
    except (OSError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: not an LFW pairs file ({exc})") from exc
    left: list[tuple[str, int]] = []
    right: list[tuple[str, int]] = []
    same: list[bool] = []
    folds: list[int] = []
    body = lines[1:]
    if len(body) != n_folds * 2 * per_class:
        raise ConfigError(
            f"{path}: header says {n_folds} folds x {2 * per_class} pairs, found {len(body)} lines"
        )
    for i, parts in enumerate(body):
        try:
            if len(parts) == 3:
                left.append((parts[0], int(parts[1])))
                right.append((parts[0], int(parts[2])))
                same.append(True)
            elif len(parts) == 4:
                left.append((parts[0], int(parts[1])))
                right.append((parts[2], int(parts[3])))
                same.append(False)
            else:
                raise ValueError(f"{len(parts)} fields")
        except ValueError as exc:
            raise ConfigError(f"{path}: line {i + 2} is not a pair ({exc})") from exc
        folds.append(i // (2 * per_class))
    return Pairs(left, right, np.array(same), np.array(folds), n_folds)


def image_path(images_dir: Path, key: tuple[str, int]) -> Path:
    name, number = key
    return images_dir / name / f"{name}_{number:04d}.jpg"


def all_images(images_dir: Path) -> list[tuple[str, int]]:
    """Every ``Name_NNNN.jpg`` under ``images_dir`` as keys."""
    keys = []
    for p in sorted(images_dir.glob("*/*.jpg")):
        name, _, num = p.stem.rpartition("_")
        if num.isdigit():
            keys.append((name, int(num)))
    return keys


@dataclass
class AlignedSet:
    """Aligned crops for a list of images, and which ones needed the no-face fallback."""

    keys: list[tuple[str, int]]
    crops: np.ndarray
    found: np.ndarray
    ms_detect: list[float] = field(default_factory=list)
    ms_align: list[float] = field(default_factory=list)
    #: faces found only by a second, more permissive detector pass (CFP profiles), if any
    relaxed: np.ndarray | None = None

    def index(self) -> dict[tuple[str, int], int]:
        return {k: i for i, k in enumerate(self.keys)}

    def save(self, path: Path) -> None:
        names = np.array([k[0] for k in self.keys])
        nums = np.array([k[1] for k in self.keys])
        extra = {} if self.relaxed is None else {"relaxed": self.relaxed}
        np.savez(path, names=names, nums=nums, crops=self.crops, found=self.found, **extra)

    @classmethod
    def load(cls, path: Path) -> AlignedSet:
        with np.load(path, allow_pickle=False) as d:
            keys = [(str(n), int(i)) for n, i in zip(d["names"], d["nums"], strict=True)]
            relaxed = d.get("relaxed")
            return cls(keys, d["crops"], d["found"], relaxed=relaxed)


def align_images(
    images_dir: Path,
    keys: Sequence[tuple[str, int]],
    detector: MTCNNDetector,
    progress: Progress | None = None,
    path_of: Callable[[Path, tuple[str, int]], Path] = image_path,
) -> AlignedSet:
    """Detect (central face, as the LFW protocol intends) and align every image.

    Images where the detector finds nothing are aligned with the mean landmarks of the images
    where it did find a face (LFW faces sit at a fixed place), and counted in ``found``.
    ``path_of`` maps a key to its file (LFW naming by default; CFP passes its own).
    """
    crops = np.zeros((len(keys), 112, 112, 3), np.uint8)
    found = np.zeros(len(keys), bool)
    landmarks: list[np.ndarray | None] = []
    images: dict[int, np.ndarray] = {}
    ms_detect: list[float] = []
    ms_align: list[float] = []
    indices: Iterable[int] = range(len(keys))
    if progress is not None:
        indices = progress(indices, "detect+align", len(keys))
    for i in indices:
        img = load_image(path_of(images_dir, keys[i]))
        t0 = time.perf_counter()
        face = select_face(detector.detect(img), img.shape, "central")
        t1 = time.perf_counter()
        ms_detect.append((t1 - t0) * 1000)
        if face is None:
            landmarks.append(None)
            images[i] = img
            continue
        crops[i] = align_face(img, face.landmarks).crop
        ms_align.append((time.perf_counter() - t1) * 1000)
        found[i] = True
        landmarks.append(face.landmarks)
    if images:
        mean = np.mean([lm for lm in landmarks if lm is not None], axis=0)
        for i, img in images.items():
            crops[i] = align_face(img, mean).crop
    return AlignedSet(list(keys), crops, found, ms_detect, ms_align)


def embed_crops(embedder: Embedder, crops: np.ndarray, batch: int = 64) -> tuple[np.ndarray, float]:
    """Embeddings for all crops and the mean ms per face."""
    t0 = time.perf_counter()
    out = np.concatenate(
        [embedder.embed(crops[i : i + batch]) for i in range(0, len(crops), batch)]
    )
    return out, (time.perf_counter() - t0) * 1000 / max(len(crops), 1)


def pair_scores(pairs: Pairs, index: dict[tuple[str, int], int], emb: np.ndarray) -> np.ndarray:
    a = emb[[index[k] for k in pairs.left]]
    b = emb[[index[k] for k in pairs.right]]
    return np.einsum("ij,ij->i", a, b)


def identity_labels(keys: Sequence[tuple[str, int]], errata: Errata | None = None) -> np.ndarray:
    """One integer per person; with ``errata``, names of one person share a label."""
    canon = errata.canonical if errata is not None else (lambda n: n)
    names = sorted({canon(k[0]) for k in keys})
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[canon(k[0])] for k in keys])


@dataclass(frozen=True)
class Errata:
    """Known LFW label errors: names that are one person, photos to leave out."""

    same: dict[str, str]  # name -> the name it is merged into
    drop: frozenset[tuple[str, int]]
    source: str = ""

    def canonical(self, name: str) -> str:
        return self.same.get(name, name)

    def keep(self, keys: Sequence[tuple[str, int]]) -> np.ndarray:
        return np.array([k not in self.drop for k in keys], bool)


def default_errata_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("edgeface_models").joinpath("calibration/lfw_dev_errata.txt")))


def read_errata(path: Path | None = None) -> Errata:
    """Parse the errata file (``same NAME NAME`` / ``drop NAME_NNNN``, ``#`` comments)."""
    path = path or default_errata_path()
    same: dict[str, str] = {}
    drop: set[tuple[str, int]] = set()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read errata ({exc})") from exc
    for n, raw in enumerate(text.splitlines(), 1):
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "same" and len(parts) == 3:
            same[parts[2]] = parts[1]
        elif parts[0] == "drop" and len(parts) == 2 and parts[1][-4:].isdigit():
            name, _, num = parts[1].rpartition("_")
            drop.add((name, int(num)))
        else:
            raise ConfigError(f"{path}:{n}: expected 'same NAME NAME' or 'drop NAME_NNNN'")
    return Errata(same, frozenset(drop), str(path))


def impostor_and_genuine_scores(
    emb: np.ndarray, labels: np.ndarray, max_impostors: int = 2_000_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """All same-person pairs, and up to ``max_impostors`` random different-person pairs."""
    n = len(emb)
    gi, gj = [], []
    for lab in np.unique(labels):
        idx = np.nonzero(labels == lab)[0]
        if len(idx) > 1:
            a, b = np.triu_indices(len(idx), k=1)
            gi.append(idx[a])
            gj.append(idx[b])
    genuine = (
        np.einsum("ij,ij->i", emb[np.concatenate(gi)], emb[np.concatenate(gj)])
        if gi
        else np.empty(0)
    )
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_impostors)
    j = rng.integers(0, n, max_impostors)
    keep = labels[i] != labels[j]
    impostor = np.einsum("ij,ij->i", emb[i[keep]], emb[j[keep]])
    return impostor, genuine


def all_impostor_scores(
    emb: np.ndarray, labels: np.ndarray, keep_above: float = 0.15, block: int = 512
) -> tuple[np.ndarray, int]:
    """Every different-person pair (i < j), scored in blocks.

    Returns the scores >= ``keep_above`` (all a threshold for FAR <= 1e-2 needs: on LFW that
    quantile is near 0.25) and the number of impostor pairs scored, so the 24 M pairs of the dev
    half never sit in memory at once.
    """
    e = np.asarray(emb, np.float32)
    labels = np.asarray(labels)
    kept: list[np.ndarray] = []
    total = 0
    for a in range(0, len(e), block):
        rows = e[a : a + block]
        s = rows @ e[a:].T  # (b, n - a); column c is image a + c
        upper = np.arange(s.shape[1])[None, :] > np.arange(len(rows))[:, None]
        impostor = upper & (labels[a : a + block, None] != labels[None, a:])
        total += int(np.count_nonzero(impostor))
        kept.append(s[impostor & (s >= keep_above)])
    return np.concatenate(kept) if kept else np.empty(0, np.float32), total


@dataclass(frozen=True)
class OpenSetReport:
    """Open-set 1:N on LFW: one enrolled image per person, the rest as probes."""

    gallery_size: int
    genuine_probes: int
    impostor_probes: int
    rank1: float
    dir_at_far: dict[str, float]
    thresholds: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "gallery_size": self.gallery_size,
            "genuine_probes": self.genuine_probes,
            "impostor_probes": self.impostor_probes,
            "rank1": round(self.rank1, 5),
            "dir_at_far": {k: round(v, 5) for k, v in self.dir_at_far.items()},
            "thresholds": {k: round(v, 5) for k, v in self.thresholds.items()},
        }


def open_set_identification(
    keys: Sequence[tuple[str, int]], emb: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
) -> OpenSetReport:
    """Enroll the lowest-numbered image of each person with >= 2 images; probe with the others;
    people with a single image are the impostor probes. DIR = correct rank-1 and above threshold.
    """
    by_person: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(keys):
        by_person.setdefault(name, []).append(i)
    enrolled_idx, enrolled_label, probes, probe_label, impostors = [], [], [], [], []
    for label, (_name, idx) in enumerate(sorted(by_person.items())):
        idx = sorted(idx, key=lambda i: keys[i][1])
        if len(idx) >= 2:
            enrolled_idx.append(idx[0])
            enrolled_label.append(label)
            probes.extend(idx[1:])
            probe_label.extend([label] * (len(idx) - 1))
        else:
            impostors.append(idx[0])
    gallery = emb[enrolled_idx]
    labels = np.array(enrolled_label)
    sims = emb[probes] @ gallery.T
    best = np.argmax(sims, axis=1)
    best_score = sims[np.arange(len(probes)), best]
    correct = labels[best] == np.array(probe_label)
    imp_best = (emb[impostors] @ gallery.T).max(axis=1) if impostors else np.empty(0)
    dir_at: dict[str, float] = {}
    thr_at: dict[str, float] = {}
    for far in fars:
        key = f"{far:.0e}"
        t = threshold_for_far(imp_best, far) if len(imp_best) else -1.0
        thr_at[key] = t
        dir_at[key] = float(np.mean(correct & (best_score >= t)))
    return OpenSetReport(
        len(enrolled_idx), len(probes), len(impostors), float(correct.mean()), dir_at, thr_at
    )
