"""ROC curves as a PNG, one curve per model variant (log-scale false accept rate)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edgeface.errors import ConfigError, StorageError
from edgeface.evaluation.verification import Roc


def plot_roc_curves(
    curves: Mapping[str, Roc], out: str | Path, title: str = "LFW verification ROC"
) -> Path:
    """Write the PNG; the x axis is log-scaled because the operating points live at 1e-3."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edgeface[eval]'") from exc
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=100)
    try:
        for name, roc in curves.items():
            keep = roc.fpr > 0
            ax.plot(roc.fpr[keep], roc.tpr[keep], label=f"{name} (AUC {roc.auc:.4f})")
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1.0)
        ax.set_ylim(0.8, 1.0)
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out)
        except OSError as exc:
            raise StorageError(f"{out}: cannot write plot ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
    return out
