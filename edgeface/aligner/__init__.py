"""Face alignment: a 5-point similarity warp onto the ArcFace 112x112 template."""

from edgeface.aligner.similarity import (
    ARCFACE_TEMPLATE_112,
    AlignedFace,
    align_face,
    estimate_similarity,
)

__all__ = ["ARCFACE_TEMPLATE_112", "AlignedFace", "align_face", "estimate_similarity"]
