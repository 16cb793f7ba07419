"""Liveness evaluation on live/spoof folders, in ISO/IEC 30107-3 terms.

* **BPCER**: share of bona-fide (live) faces classified as attacks;
* **APCER**: share of attack (spoof) faces classified as live;
* **ACER** = (APCER + BPCER) / 2.

Only images where our detector found a face count; how many had none is reported. The
detector runs once per image: the context patches of every crop scale are kept, so the float
and INT8 model pairs are scored on exactly the same inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, EdgefaceError
from edgeface.liveness.calibration import bpcer_apcer, threshold_for_bpcer
from edgeface.liveness.crop import context_patch
from edgeface.recognition.pipeline import select_face

SPOOF_DIR = "spoof"
LIVENESS_SETS = ("celeba_spoof_subset", "nuaa_raw")
LABELS = ("live", "spoof")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class FaceSet:
    """Patches of the main face of every image of one set, per crop scale."""

    name: str
    labels: list[str] = field(default_factory=list)  # "live" / "spoof" per face
    files: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    patches: dict[float, list[np.ndarray]] = field(default_factory=dict)
    no_face: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))

    def stacked(self, scale: float) -> np.ndarray:
        return np.stack(self.patches[scale]) if self.labels else np.empty((0, 80, 80, 3), np.uint8)

    @property
    def is_live(self) -> np.ndarray:
        return np.array([lab == "live" for lab in self.labels], bool)


def set_files(root: Path, label: str) -> list[Path]:
    folder = root / label
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (a liveness set has live/ and spoof/)")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]

    def order(p: Path) -> tuple[int, str]:
        return (int(p.stem), "") if p.stem.isdigit() else (1 << 30, p.name)

    return sorted(files, key=order)


def collect_faces(
    root: Path,
    name: str,
    detect: Callable[[np.ndarray], list[Any]],
    scales: Sequence[float],
    *,
    size: int = 80,
    load: Callable[[Path], np.ndarray] | None = None,
    wrap: Callable[[Iterable[Path], str, int], Iterable[Path]] = lambda it, _d, _n: it,
    per_label: int | None = None,
) -> FaceSet:
    """Detect the largest face of every image of ``root/{live,spoof}`` and cut its patches
    (``per_label``: only that many images per folder, spread evenly)."""
    if load is None:
        from edgeface.imaging import load_image as load
    out = FaceSet(name, patches={s: [] for s in scales})
    for label in LABELS:
        files = set_files(root, label)
        if per_label is not None and len(files) > per_label:
            files = [files[i] for i in np.linspace(0, len(files) - 1, per_label).astype(int)]
        out.images[label] = len(files)
        for path in wrap(files, f"{name}/{label}", len(files)):
            try:
                image = load(path)
            except EdgefaceError:
                out.no_face[label] += 1
                continue
            face = select_face(detect(image), image.shape, "largest")
            if face is None:
                out.no_face[label] += 1
                continue
            for s in scales:
                out.patches[s].append(context_patch(image, face.box, s, size))
            out.labels.append(label)
            out.files.append(f"{label}/{path.name}")
            out.boxes.append(tuple(round(float(v), 2) for v in face.box))  # type: ignore[arg-type]
    return out


def cut_patches(root: Path, faces: FaceSet, scales: Sequence[float], *, size: int = 80) -> FaceSet:
    """Fill ``faces.patches`` from its (cached) boxes: reading images is cheap, detecting is not."""
    from edgeface.imaging import load_image

    faces.boxes = [tuple(b) for b in faces.boxes]  # type: ignore[misc]
    faces.patches = {s: [] for s in scales}
    for name, box in zip(faces.files, faces.boxes, strict=True):
        image = load_image(root / name)
        for s in scales:
            faces.patches[s].append(context_patch(image, box, s, size))
    return faces


def summed_probabilities(checker: Any, faces: FaceSet) -> np.ndarray:
    """Summed softmax vectors ``(N, 3)`` of the checker's networks (each on its own scale)."""
    total = np.zeros((len(faces.labels), 3), np.float64)
    for net in checker.nets:
        if faces.labels:
            total += net.probabilities(faces.stacked(net.crop_scale))
    return total


def score_faces(checker: Any, faces: FaceSet) -> np.ndarray:
    """Fused live scores of every face of a set (the checker's networks, their own scales)."""
    from edgeface.liveness.model import LIVE_INDEX

    return summed_probabilities(checker, faces)[:, LIVE_INDEX] / len(checker.nets)


def argmax_rates(summed: np.ndarray, is_live: np.ndarray) -> dict[str, float]:
    """Upstream's own rule (live iff the summed vector's argmax is the live class)."""
    from edgeface.liveness.model import LIVE_INDEX

    live = np.argmax(summed, axis=1) == LIVE_INDEX
    nan = float("nan")
    return {
        "bpcer": float(np.mean(~live[is_live])) if is_live.any() else nan,
        "apcer": float(np.mean(live[~is_live])) if (~is_live).any() else nan,
    }


def ms_per_face(checker: Any, faces: FaceSet, runs: int = 50) -> float:
    """Batch-1 time of all networks for one face (patches already cut), median over runs."""
    times = []
    n = len(faces.labels)
    for i in range(min(runs, n)):
        t0 = time.perf_counter()
        for net in checker.nets:
            net.probabilities(faces.patches[net.crop_scale][i][None])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000) if times else float("nan")


def det_curve(live: np.ndarray, spoof: np.ndarray) -> dict[str, list[float]]:
    """APCER and BPCER at every distinct score used as a threshold (for the DET plot)."""
    thresholds = np.unique(np.concatenate([live, spoof, [np.inf]]))
    bpcer = [float(np.mean(live < t)) for t in thresholds]
    apcer = [float(np.mean(spoof >= t)) for t in thresholds]
    return {"threshold": thresholds.tolist(), "apcer": apcer, "bpcer": bpcer}


def set_metrics(
    live: np.ndarray, spoof: np.ndarray, thresholds: dict[str, float]
) -> dict[str, Any]:
    """APCER / BPCER / ACER at the given thresholds, APCER at this set's BPCER 1 % and 5 %."""
    rows = {}
    for key, thr in thresholds.items():
        bpcer, apcer = bpcer_apcer(live, spoof, thr)
        rows[key] = {"threshold": round(thr, 6), "bpcer": bpcer, "apcer": apcer,
                     "acer": (bpcer + apcer) / 2}  # fmt: skip
    at = {}
    for target in (0.01, 0.05):
        if live.size:
            thr = threshold_for_bpcer(live, target)
            bpcer, apcer = bpcer_apcer(live, spoof, thr)
            at[f"{target:g}"] = {"threshold": round(thr, 6), "bpcer": bpcer, "apcer": apcer}
    return {"live_faces": int(live.size), "spoof_faces": int(spoof.size),
            "at_calibrated": rows, "apcer_at_bpcer": at}  # fmt: skip


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    """APCER against BPCER per (variant, set), log-free axes in percent."""
    from edgeface.evaluation.plots import _figure

    with _figure(out) as ax:
        for name, (live, spoof) in curves.items():
            c = det_curve(live, spoof)
            ax.plot(np.array(c["bpcer"]) * 100, np.array(c["apcer"]) * 100, label=name)
        ax.set_xlabel("BPCER (live rejected), %")
        ax.set_ylabel("APCER (attacks accepted), %")
        ax.set_xlim(0, 30)
        ax.set_ylim(0, 60)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("Liveness DET: MiniFASNet pair on our MTCNN faces")
    return out
