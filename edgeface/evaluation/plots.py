"""Precision-recall curves as a PNG (matplotlib, headless Agg backend).

matplotlib is an optional dependency (extra ``eval``), imported only when a plot is asked for,
so the runtime install on a door unit never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError, StorageError


def plot_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None, float]],
    out: str | Path,
    title: str = "Face detection: precision-recall",
) -> Path:
    """Write one PNG with a curve per dataset.

    ``curves[name] = (recall, precision, ap, iou_threshold)``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edgeface[eval]'") from exc
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=100)
    try:
        for name, (recall, precision, ap, iou) in curves.items():
            ap_txt = f"AP {ap:.3f}" if ap is not None else "AP n/a"
            r = np.concatenate(([0.0], recall)) if len(recall) else np.zeros(1)
            p = np.concatenate(([1.0], precision)) if len(precision) else np.ones(1)
            ax.plot(r, p, drawstyle="steps-post", label=f"{name} (IoU {iou:g}, {ap_txt})")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, format="png")
        except OSError as exc:
            raise StorageError(f"{out}: cannot write plot ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
    return out
