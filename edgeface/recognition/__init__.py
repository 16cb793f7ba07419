"""Recognition: image -> faces -> aligned crops -> embeddings -> verify / identify."""

from edgeface.recognition.calibration import Calibration, load_calibration
from edgeface.recognition.pipeline import (
    FacePipeline,
    FaceResult,
    IdentifyResult,
    PipelineConfig,
    VerifyResult,
)

__all__ = [
    "Calibration",
    "FacePipeline",
    "FaceResult",
    "IdentifyResult",
    "PipelineConfig",
    "VerifyResult",
    "load_calibration",
]
