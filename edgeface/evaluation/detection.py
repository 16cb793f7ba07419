"""Detection quality: precision, recall and average precision against boxed ground truth,
and the LFW detection rate.

Why these definitions (so the numbers compare with published ones):

* **Matching** (per image): detections are taken in descending score order; each one is
  matched to the *unmatched* counted ground-truth box with which it has the highest IoU, if
  that IoU >= the dataset's threshold -> true positive. Otherwise, if it overlaps an
  *ignored* box (VOC ``difficult``) by >= the threshold it is dropped (neither TP nor FP), as in
  the VOC devkit; otherwise it is a false positive. Ties in score keep detector order
  (stable sort).
* **AP**: all-point interpolated AP (VOC 2010+ / COCO-style integral without the 101-point
  sampling): the precision envelope (running max from the right) integrated over every recall
  step. Detections of all images are pooled and sorted by score.
* **Precision / recall** are also reported at the detector's own operating point (all
  detections it returned), which is what a user of ``edgeface detect`` gets.
* **IoU threshold** is per dataset: 0.5 for loose VOC boxes, 0.4 for dlib's tight square
  boxes (an MTCNN box is taller than a dlib box of the same face, so IoU 0.5 would count
  correct detections as misses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.detector.boxes import iou_matrix
from edgeface.errors import ConfigError
from edgeface.evaluation.annotations import ImageAnnotation
from edgeface.types import Face

DetectFn = Callable[[np.ndarray], Sequence[Face]]


# ----------------------------------------------------------------------------- geometry

__all__ = ["iou_matrix"]  # the detector's, re-exported for evaluation callers


def match_pairs(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of rows to columns by descending IoU (>= ``min_iou``).

    Used to pair two detectors' outputs on one image (no scores involved). For the small,
    well-separated face sets here greedy equals the optimal (Hungarian) assignment whenever
    every pair above 0.5 IoU is unique, which non-maximum suppression guarantees.
    """
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.argsort(-iou, axis=None, kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < min_iou:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((r, c))
        used_r.add(r)
        used_c.add(c)
    return pairs


# ----------------------------------------------------------------------------- matching / AP


@dataclass(frozen=True)
class ImageMatch:
    """Outcome of matching one image's detections to its ground truth."""

    scores: np.ndarray  # (D,) detection scores, in the order given
    tp: np.ndarray  # (D,) bool: true positive
    ignored: np.ndarray  # (D,) bool: matched an ignored box (excluded from P/R/AP)
    gt_matched: np.ndarray  # (G,) bool: counted GT boxes that were found (ignored: False)


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray | None,
    iou_threshold: float,
) -> ImageMatch:
    """Greedy score-ordered matching of one image's detections (see the module docstring)."""
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt_ignore is None:
        gt_ignore = np.zeros(len(gt_boxes), dtype=bool)
    gt_ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    if len(det_boxes) != len(det_scores) or len(gt_boxes) != len(gt_ignore):
        raise ValueError("boxes and scores/flags must have the same length")
    d, g = len(det_boxes), len(gt_boxes)
    tp = np.zeros(d, dtype=bool)
    ignored = np.zeros(d, dtype=bool)
    matched = np.zeros(g, dtype=bool)
    if d and g:
        iou = iou_matrix(det_boxes, gt_boxes)
        for i in np.argsort(-det_scores, kind="stable"):
            cand = np.where(~gt_ignore & ~matched, iou[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                tp[i] = True
                matched[j] = True
            elif gt_ignore.any() and iou[i][gt_ignore].max() >= iou_threshold:
                ignored[i] = True
    return ImageMatch(det_scores, tp, ignored, matched & ~gt_ignore)


def precision_recall_curve(
    scores: np.ndarray, tp: np.ndarray, n_gt: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled detections -> ``(recall, precision, thresholds)`` with one entry per detection,
    sorted by descending score (stable for ties)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    ctp = np.cumsum(tp[order])
    cfp = np.cumsum(~tp[order])
    recall = ctp / n_gt if n_gt > 0 else np.zeros(len(ctp))
    precision = ctp / np.maximum(ctp + cfp, 1)
    return recall, precision, scores[order]


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: area under the monotone precision envelope."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class DetectionReport:
    """Pooled result of one dataset; :meth:`summary` is the JSON form."""

    name: str
    iou_threshold: float
    n_images: int = 0
    n_gt: int = 0
    n_ignored_gt: int = 0
    scores: list[np.ndarray] = field(default_factory=list, repr=False)
    tp: list[np.ndarray] = field(default_factory=list, repr=False)
    gt_found: list[np.ndarray] = field(default_factory=list, repr=False)
    gt_sizes: list[np.ndarray] = field(default_factory=list, repr=False)

    def add(self, ann: ImageAnnotation, m: ImageMatch) -> None:
        keep = ~m.ignored
        self.n_images += 1
        self.n_gt += ann.n_counted
        self.n_ignored_gt += int(ann.ignore.sum())
        self.scores.append(m.scores[keep])
        self.tp.append(m.tp[keep])
        counted = ~ann.ignore
        self.gt_found.append(m.gt_matched[counted])
        b = ann.boxes[counted]
        self.gt_sizes.append(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))

    def _pooled(self) -> tuple[np.ndarray, np.ndarray]:
        s = np.concatenate(self.scores) if self.scores else np.zeros(0)
        t = np.concatenate(self.tp) if self.tp else np.zeros(0, dtype=bool)
        return s, t

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        s, t = self._pooled()
        r, p, _ = precision_recall_curve(s, t, self.n_gt)
        return r, p

    def summary(self, min_face_size: float | None = None) -> dict[str, object]:
        _, t = self._pooled()
        n_tp, n_det = int(t.sum()), len(t)
        r, p = self.curve()
        out: dict[str, object] = {
            "iou_threshold": self.iou_threshold,
            "images": self.n_images,
            "gt_faces": self.n_gt,
            "ignored_gt_faces": self.n_ignored_gt,
            "detections": n_det,
            "true_positives": n_tp,
            "false_positives": n_det - n_tp,
            "precision": _ratio(n_tp, n_det),
            "recall": _ratio(n_tp, self.n_gt),
            "ap": round(average_precision(r, p), 4) if self.n_gt else None,
        }
        if min_face_size is not None and self.gt_sizes:
            sizes = np.concatenate(self.gt_sizes)
            found = np.concatenate(self.gt_found)
            big = sizes >= min_face_size
            out["gt_faces_ge_min_size"] = int(big.sum())
            out["recall_ge_min_size"] = _ratio(int(found[big].sum()), int(big.sum()))
        return out


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def faces_to_arrays(faces: Sequence[Face]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray([f.score for f in faces], dtype=np.float64).reshape(-1)
    return boxes, scores


def evaluate_annotations(
    name: str,
    annotations: Iterable[ImageAnnotation],
    detect: DetectFn,
    iou_threshold: float,
    load: Callable[[Path], np.ndarray],
) -> DetectionReport:
    """Run ``detect`` on every annotated image and pool the matches."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"IoU threshold for {name} must be in (0, 1], got {iou_threshold}")
    report = DetectionReport(name, iou_threshold)
    for ann in annotations:
        boxes, scores = faces_to_arrays(detect(load(ann.image)))
        report.add(ann, match_detections(boxes, scores, ann.boxes, ann.ignore, iou_threshold))
    return report


# ----------------------------------------------------------------------------- LFW rate


@dataclass
class LfwReport:
    """LFW detection rate: each image shows one person, roughly centred.

    An image counts as *detected* when some face's box centre lies within
    ``centre_tolerance * min(width, height)`` of the image centre (LFW's deep-funneled images
    are 250x250 with the face centre within ~25 px of the middle; other people in the
    background sit >= 50 px away, so 0.15 -> 37.5 px separates the two).
    """

    centre_tolerance: float = 0.15
    n_images: int = 0
    zero_faces: list[str] = field(default_factory=list)
    central_missing: list[str] = field(default_factory=list)
    multi_faces: int = 0

    def add(self, name: str, width: int, height: int, faces: Sequence[Face]) -> bool:
        self.n_images += 1
        if len(faces) > 1:
            self.multi_faces += 1
        if not faces:
            self.zero_faces.append(name)
        cx, cy = width / 2.0, height / 2.0
        tol = self.centre_tolerance * min(width, height)
        ok = any(math.hypot(f.center[0] - cx, f.center[1] - cy) <= tol for f in faces)
        if not ok:
            self.central_missing.append(name)
        return ok

    def summary(self, max_examples: int = 20) -> dict[str, object]:
        detected = self.n_images - len(self.central_missing)
        return {
            "images": self.n_images,
            "detected": detected,
            "detection_rate": _ratio(detected, self.n_images),
            "zero_faces": len(self.zero_faces),
            "central_face_missing": len(self.central_missing),
            "more_than_one_face": self.multi_faces,
            "centre_tolerance": self.centre_tolerance,
            "missing_examples": self.central_missing[:max_examples],
        }


def spread_sample(items: Sequence[Path], limit: int | None) -> list[Path]:
    """A deterministic subset spread over the whole sorted list (not the first N people)."""
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    if limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def lfw_images(lfw_dir: Path) -> list[Path]:
    """All ``<Name>/<Name>_NNNN.jpg`` under an LFW ``images`` folder, sorted."""
    if not lfw_dir.is_dir():
        raise ConfigError(f"{lfw_dir}: no such LFW images folder")
    files = sorted(lfw_dir.glob("*/*.jpg"))
    if not files:
        raise ConfigError(f"{lfw_dir}: no LFW images (<Name>/<Name>_NNNN.jpg) found")
    return files


def evaluate_lfw(
    images: Iterable[Path],
    detect: DetectFn,
    load: Callable[[Path], np.ndarray],
    root: Path | None = None,
    centre_tolerance: float = 0.15,
) -> LfwReport:
    report = LfwReport(centre_tolerance=centre_tolerance)
    for path in images:
        rgb = load(path)
        name = path.relative_to(root).as_posix() if root is not None else str(path)
        report.add(name, rgb.shape[1], rgb.shape[0], detect(rgb))
    return report
