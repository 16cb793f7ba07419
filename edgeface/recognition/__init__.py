"""Recognition: image -> faces -> aligned crops -> embeddings -> verify / identify.

:class:`FacePipeline` is the one recognition path (size filter, :func:`select_face`,
alignment, embedding); its seams are the :class:`FaceDetector`, :class:`FaceEmbedder` and
:class:`StageTimer` protocols.
"""

from edgeface.recognition.calibration import Calibration, load_calibration
from edgeface.recognition.pipeline import (
    FaceDetector,
    FaceEmbedder,
    FacePipeline,
    FaceResult,
    Found,
    IdentifyResult,
    PipelineConfig,
    StageTimer,
    VerifyResult,
    select_face,
)

__all__ = [
    "Calibration",
    "FaceDetector",
    "FaceEmbedder",
    "FacePipeline",
    "FaceResult",
    "Found",
    "IdentifyResult",
    "PipelineConfig",
    "StageTimer",
    "VerifyResult",
    "load_calibration",
    "select_face",
]
