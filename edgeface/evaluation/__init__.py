"""Offline quality evaluation (detection now; LFW verification and identification later).

Nothing here runs on the device: these modules read research data sets from the shared data
folder and write reports. Heavy optional libraries (matplotlib, tqdm) are imported lazily.
"""

from edgeface.evaluation.annotations import (
    ImageAnnotation,
    load_voc_dir,
    parse_dlib_xml,
    parse_voc_xml,
)
from edgeface.evaluation.detection import (
    DetectionReport,
    LfwReport,
    average_precision,
    evaluate_annotations,
    evaluate_lfw,
    iou_matrix,
    match_detections,
    match_pairs,
    precision_recall_curve,
)

__all__ = [
    "DetectionReport",
    "ImageAnnotation",
    "LfwReport",
    "average_precision",
    "evaluate_annotations",
    "evaluate_lfw",
    "iou_matrix",
    "load_voc_dir",
    "match_detections",
    "match_pairs",
    "parse_dlib_xml",
    "parse_voc_xml",
    "precision_recall_curve",
]
