"""Verification metrics from genuine/impostor similarity scores (LFW protocol and friends).

All functions take plain score arrays so they can be checked on hand-made examples and
reused for every backend x precision variant in the quantization report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.recognition.calibration import threshold_for_far


@dataclass(frozen=True)
class Roc:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    @property
    def eer(self) -> float:
        """Equal error rate: where the false accept rate meets the false reject rate."""
        fnr = 1.0 - self.tpr
        i = int(np.argmin(np.abs(fnr - self.fpr)))
        return float((fnr[i] + self.fpr[i]) / 2.0)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    """ROC over every distinct threshold (accept when score >= threshold)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tp[last] / pos]
    fpr = np.r_[0.0, fp[last] / neg]
    return Roc(fpr=fpr, tpr=tpr, thresholds=np.r_[np.inf, s[last]])


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximizing accuracy on these pairs (midpoints between distinct scores)."""
    s = np.unique(scores)
    candidates = np.r_[s[0] - 1e-6, (s[:-1] + s[1:]) / 2.0, s[-1] + 1e-6]
    acc = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(acc))])


def kfold_accuracy(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> tuple[float, float, list[float]]:
    """LFW-style accuracy: each fold scored with the threshold chosen on the other folds."""
    accs: list[float] = []
    for k in np.unique(folds):
        test = folds == k
        t = best_accuracy_threshold(scores[~test], same[~test])
        accs.append(float(np.mean((scores[test] >= t) == same[test])))
    return float(np.mean(accs)), float(np.std(accs)), accs


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) with the threshold set on the impostor scores for ``far``."""
    t = threshold_for_far(scores[~same], far)
    return float(np.mean(scores[same] >= t)), t


@dataclass(frozen=True)
class VerificationReport:
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    tar: dict[str, float]
    thresholds: dict[str, float]
    auc: float
    eer: float
    pairs: int

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": round(self.accuracy, 5),
            "accuracy_std": round(self.accuracy_std, 5),
            "fold_accuracies": [round(a, 5) for a in self.fold_accuracies],
            "tar_at_far": {k: round(v, 5) for k, v in self.tar.items()},
            "thresholds_at_far": {k: round(v, 5) for k, v in self.thresholds.items()},
            "roc_auc": round(self.auc, 6),
            "eer": round(self.eer, 5),
            "pairs": self.pairs,
        }


def verification_report(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
) -> VerificationReport:
    acc, std, per_fold = kfold_accuracy(scores, same, folds)
    roc = roc_curve(scores, same)
    tar: dict[str, float] = {}
    thr: dict[str, float] = {}
    for far in fars:
        tar[f"{far:.0e}"], thr[f"{far:.0e}"] = tar_at_far(scores, same, far)
    return VerificationReport(acc, std, per_fold, tar, thr, roc.auc, roc.eer, len(scores))
