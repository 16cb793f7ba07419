"""Evaluation plots as PNG files (matplotlib, headless Agg backend).

matplotlib is an optional dependency (extra ``eval``), imported only when a plot is asked for,
so the runtime install on a door unit never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, StorageError
from edgeface.evaluation.verification import Roc


@contextmanager
def _figure(out: Path) -> Iterator[Any]:
    """An Axes to draw on; the figure is saved to ``out`` and closed when the block ends."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edgeface[eval]'") from exc
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=100)
    try:
        yield ax
        fig.tight_layout()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, format="png")
        except OSError as exc:
            raise StorageError(f"{out}: cannot write plot ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)


def plot_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None, float]],
    out: str | Path,
    title: str = "Face detection: precision-recall",
) -> Path:
    """Write one PNG with a curve per dataset.

    ``curves[name] = (recall, precision, ap, iou_threshold)``.
    """
    out = Path(out)
    with _figure(out) as ax:
        for name, (recall, precision, ap, iou) in curves.items():
            ap_txt = f"AP {ap:.3f}" if ap is not None else "AP n/a"
            r = np.concatenate(([0.0], recall)) if len(recall) else np.zeros(1)
            p = np.concatenate(([1.0], precision)) if len(precision) else np.ones(1)
            ax.plot(r, p, drawstyle="steps-post", label=f"{name} (IoU {iou:g}, {ap_txt})")
        _decorate(ax, title, "recall", "precision", (0.0, 1.0), (0.0, 1.02), "lower left")
    return out


def plot_roc_curves(
    curves: Mapping[str, Roc], out: str | Path, title: str = "LFW verification ROC"
) -> Path:
    """One ROC curve per model variant; log-scaled FAR, where the operating points live."""
    out = Path(out)
    with _figure(out) as ax:
        for name, roc in curves.items():
            keep = roc.fpr > 0
            ax.plot(roc.fpr[keep], roc.tpr[keep], label=f"{name} (AUC {roc.auc:.4f})")
        ax.set_xscale("log")
        _decorate(ax, title, "false accept rate", "true accept rate", (1e-4, 1.0), (0.8, 1.0),
                  "lower right")  # fmt: skip
    return out


def _decorate(
    ax: Any,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    legend: str,
) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc=legend, fontsize=8)
