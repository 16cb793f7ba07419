"""Liveness thresholds measured on data, one file per set of model files.

The fused score of the float pair and of the INT8 pair are not the same numbers, so a
threshold only means something for the exact files it was measured with: the file lists
their sha256 and :class:`~edgeface.liveness.checker.LivenessChecker` picks the packaged
file whose hashes match the models it opened.

A threshold is chosen for a target **BPCER** (bona-fide presentation classification error
rate, ISO/IEC 30107-3: live faces wrongly rejected) from the development live faces; the
file also records the **APCER** (attacks wrongly accepted) that threshold gives on the
development spoofs, per set, so nobody has to guess what a setting costs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError

#: the pooled development live faces: 0.02 meets both sets' goals (docs/liveness.md), 0.05 does not
DEFAULT_TARGET_BPCER = 0.02
TARGETS = (0.01, 0.02, 0.05, 0.10)


def threshold_for_bpcer(live_scores: np.ndarray, bpcer: float) -> float:
    """Largest threshold with (live scores < threshold) / n <= ``bpcer``.

    A face is accepted as live when ``score >= threshold``. With n live scores at most
    ``floor(bpcer * n)`` of them may fall below; the threshold is the next live score up,
    the strictest value that still keeps the promise on the data.
    """
    scores = np.sort(np.asarray(live_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no live scores to calibrate on")
    allowed = int(np.floor(bpcer * scores.size + 1e-9))
    return float(scores[min(allowed, scores.size - 1)])


def bpcer_apcer(
    live_scores: np.ndarray, spoof_scores: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(BPCER, APCER) at ``threshold``: live rejected, attacks accepted (NaN for no data)."""
    live = np.asarray(live_scores, np.float64)
    spoof = np.asarray(spoof_scores, np.float64)
    bpcer = float(np.mean(live < threshold)) if live.size else float("nan")
    apcer = float(np.mean(spoof >= threshold)) if spoof.size else float("nan")
    return bpcer, apcer


def _key(bpcer: float) -> str:
    return f"{bpcer:g}"


@dataclass
class LivenessCalibration:
    """Fused-score thresholds per target BPCER for one set of liveness model files."""

    variant: str
    model_sha256: list[str]
    thresholds: dict[str, float]
    #: APCER / BPCER per dataset at each threshold, and how the file was made
    source: dict[str, object] = field(default_factory=dict)

    def threshold(self, target_bpcer: float = DEFAULT_TARGET_BPCER) -> float:
        key = _key(target_bpcer)
        if key not in self.thresholds:
            known = ", ".join(sorted(self.thresholds, key=float))
            raise ConfigError(
                f"no liveness threshold calibrated for BPCER {target_bpcer:g} (have: {known})"
            )
        return self.thresholds[key]

    def save(self, path: Path) -> None:
        from edgeface.storage import atomic_write

        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        atomic_write(Path(path), text.encode("utf-8"), mode=0o644, what="liveness calibration")


def packaged_calibrations() -> list[Path]:
    root = Path(str(resources.files("edgeface_models").joinpath("calibration")))
    return sorted(root.glob("liveness-*.json"))


def read_calibration(path: Path) -> LivenessCalibration:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return LivenessCalibration(
            variant=str(raw["variant"]),
            model_sha256=[str(s) for s in raw["model_sha256"]],
            thresholds={str(k): float(v) for k, v in raw["thresholds"].items()},
            source=dict(raw.get("source", {})),
        )
    except FileNotFoundError:
        raise ConfigError(f"{path}: no liveness calibration file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a valid liveness calibration file ({exc})") from exc


def find_calibration(
    model_sha256: list[str], path: Path | None = None, beside: Sequence[Path] = ()
) -> LivenessCalibration:
    """The calibration made with exactly these model files (``path`` must match them too).

    Without ``path``: the ``liveness-*.json`` files in the folders ``beside`` (where the model
    files are: a quantized pair travels with the calibration measured for it, see
    ``edgeface eval liveness --write-calibration DIR``), then the packaged ones.
    """
    if path is not None:
        candidates = [Path(path)]
    else:
        folders = dict.fromkeys(Path(d) for d in beside)
        candidates = [c for d in folders for c in sorted(d.glob("liveness-*.json"))]
        candidates += packaged_calibrations()
    for p in candidates:
        cal = read_calibration(p)
        if cal.model_sha256 == list(model_sha256):
            return cal
        if path is not None:
            raise ConfigError(
                f"{p}: calibrated for other liveness model files "
                f"({', '.join(s[:12] for s in cal.model_sha256)}), these are "
                f"{', '.join(s[:12] for s in model_sha256)}"
            )
    raise ConfigError(
        "no liveness calibration for these model files "
        f"({', '.join(s[:12] for s in model_sha256)}); measure one with: "
        "edgeface eval liveness --model ... --write-calibration DIR (or set an explicit "
        "threshold)"
    )
