"""Passive liveness (presentation-attack detection) on one RGB frame: MiniFASNet pair.

``LivenessChecker.from_config().check(image_rgb, face)`` -> score, threshold, live. What a
single frame cannot stop, and what a deployment can add: docs/liveness.md.
"""

from edgeface.liveness.calibration import LivenessCalibration, threshold_for_bpcer
from edgeface.liveness.checker import LivenessChecker, LivenessConfig, LivenessResult
from edgeface.liveness.crop import context_box, context_patch
from edgeface.liveness.model import LivenessNet

__all__ = [
    "LivenessCalibration",
    "LivenessChecker",
    "LivenessConfig",
    "LivenessNet",
    "LivenessResult",
    "context_box",
    "context_patch",
    "threshold_for_bpcer",
]
