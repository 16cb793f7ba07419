"""The door's decision threshold: chosen for a false-positive identification rate per attempt.

A probe of a stranger is compared with every enrolled person, so a per-comparison FAR says
little at a door: with N people the chance that *someone* matches grows about N-fold. The
door therefore takes ``target_fpir`` and derives the per-comparison FAR as FPIR / N
(:func:`~edgeface.recognition.calibration.far_for_fpir`), then the strictest calibrated
threshold that meets it. It is recomputed at every gallery reload, so the threshold tightens
as the gallery grows. ``recognition.far`` (a fixed per-comparison FAR) and
``recognition.threshold`` (a pinned cosine) remain for setups that want them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeface.door.config import RecognitionConfig
from edgeface.errors import ConfigError
from edgeface.recognition.calibration import Calibration, far_for_fpir


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and where it came from, for the log and the audit record."""

    threshold: float
    gallery_size: int
    rule: str  # "target_fpir", "far" or "pinned"
    far: float | None = None  # the per-comparison FAR asked for
    calibrated_far: str | None = None  # the calibration entry used
    impostors_above: int | None = None
    impostor_pairs: int | None = None
    #: True when the gallery is so large that no calibrated FAR is small enough
    beyond_calibration: bool = False

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "threshold": round(self.threshold, 6),
            "gallery_size": self.gallery_size,
            "threshold_rule": self.rule,
        }
        if self.far is not None:
            out["far"] = self.far
            out["calibrated_far"] = self.calibrated_far
        if self.beyond_calibration:
            out["beyond_calibration"] = True
        return out

    def describe(self) -> str:
        text = f"threshold {self.threshold:.4f} for {self.gallery_size} enrolled ({self.rule}"
        if self.far is not None:
            text += f": per-comparison FAR {self.far:.1e}, calibrated entry {self.calibrated_far}"
            if self.impostor_pairs:
                text += f", {self.impostors_above} of {self.impostor_pairs} impostor pairs above it"
        text += ")"
        if self.beyond_calibration:
            text += (
                "; WARNING: the gallery is larger than the calibration supports for this "
                "target_fpir, using the strictest calibrated threshold"
            )
        return text


class ThresholdRule:
    """Turns the gallery size into a threshold, per ``[recognition]`` of door.toml."""

    def __init__(self, rc: RecognitionConfig, calibration: Calibration | None) -> None:
        self.rc = rc
        self.calibration = calibration
        if rc.threshold is None and calibration is None:
            raise ConfigError(
                "recognition.threshold: no calibration for the embedding model; set "
                "recognition.threshold or run: edgeface eval lfw --write-calibration"
            )

    def choose(self, gallery_size: int) -> ThresholdChoice:
        rc = self.rc
        if rc.threshold is not None:
            return ThresholdChoice(rc.threshold, gallery_size, "pinned")
        assert self.calibration is not None
        if rc.target_fpir is not None:
            far, rule = far_for_fpir(rc.target_fpir, gallery_size), "target_fpir"
        else:
            far, rule = rc.far, "far"
        thr, key = self.calibration.threshold_at_most(far)
        support = self.calibration.support.get(key, {})
        return ThresholdChoice(
            threshold=thr,
            gallery_size=gallery_size,
            rule=rule,
            far=far,
            calibrated_far=key,
            impostors_above=support.get("impostors_above"),
            impostor_pairs=support.get("impostor_pairs"),
            beyond_calibration=float(key) > far * (1 + 1e-9),
        )
