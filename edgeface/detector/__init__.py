"""Face detection: a NumPy MTCNN cascade (P-Net, R-Net, O-Net) with pluggable backends."""

from edgeface.detector.mtcnn import DetectorConfig, MTCNNDetector, pyramid_scales

__all__ = ["DetectorConfig", "MTCNNDetector", "pyramid_scales"]
