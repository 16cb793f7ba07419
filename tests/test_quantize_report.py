"""Report arithmetic: box agreement with the float cascade, and the Markdown table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeface_tools.quantize.report import (
    EDGEFACE_GOALS,
    GOALS,
    _agreement,
    _meets_goals,
    grey_noise,
    load_artifacts,
    markdown,
)

from edgeface.errors import ConfigError


def test_agreement_counts_float_faces_and_annotated_faces() -> None:
    a, b = Path("a.jpg"), Path("b.jpg")
    reference = {
        a: np.array([[0, 0, 100, 100], [200, 200, 220, 220]], float),  # a face, a background FP
        b: np.array([[10, 10, 60, 60]], float),
    }
    found = {
        a: np.array([[0, 0, 100, 95], [300, 300, 320, 320]], float),  # IoU 0.95; the FP moved
        b: np.zeros((0, 4)),  # the quantized cascade lost this face
    }
    gt = {
        a: (np.array([[2, 2, 98, 100]], float), 0.5),
        b: (np.array([[10, 10, 60, 60]], float), 0.5),
    }
    all_iou, gt_iou = _agreement(reference, found, gt)
    np.testing.assert_allclose(all_iou, [0.95, 0.0, 0.0])
    np.testing.assert_allclose(gt_iou, [0.95, 0.0])


def test_markdown_has_one_row_per_variant() -> None:
    row = {
        "variant": "int8 onnx",
        "backend": "onnxruntime",
        "size_bytes": 1_269_982,
        "ms_per_face_b1": 3.2,
        "accuracy": 0.9883,
        "tar_at_far_1e-3": 0.9713,
        "cosine_to_float_mean": 0.9941,
        "cosine_to_float_p1": 0.988,
        "meets_goals": True,
    }
    text = markdown({"embedder": [row, {**row, "variant": "float onnx", "meets_goals": None}]})
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert len(lines) == 3
    assert (
        "| mobilefacenet | int8 onnx | onnxruntime | 1270 | 3.20 | 98.83 | 97.13 | 0.9941 "
        "| 0.9880 | yes |" in text
    )


def test_each_model_is_held_to_its_own_goals() -> None:
    row = {
        "backend": "onnxruntime",
        "size_bytes": 3_500_000,  # over MobileFaceNet's size goal; EdgeFace has none
        "accuracy_delta": -0.0025,  # within EdgeFace's 0.3 point, over MobileFaceNet's 0.2
        "tar_delta": -0.001,
        "cosine_to_float_mean": 0.99,
        "time_ratio_vs_float_onnx": 0.6,
        "time_ratio_vs_mobilefacenet_int8_onnx": 1.4,
    }
    assert _meets_goals(row, EDGEFACE_GOALS)
    assert not _meets_goals(row, GOALS)
    assert not _meets_goals({**row, "time_ratio_vs_mobilefacenet_int8_onnx": 1.6}, EDGEFACE_GOALS)


def test_report_without_a_build_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run edgeface quantize build"):
        load_artifacts(tmp_path)
    (tmp_path / "artifacts.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_artifacts(tmp_path)


def test_grey_noise_moves_each_value_by_at_most_one_level_deterministically() -> None:
    img = np.array([[[0, 128, 255]] * 50] * 40, np.uint8)
    a, b = grey_noise(img, 3), grey_noise(img, 3)
    np.testing.assert_array_equal(a, b)
    diff = a.astype(int) - img.astype(int)
    assert diff.min() >= -1 and diff.max() <= 1 and (diff != 0).mean() > 0.3
    assert a.dtype == np.uint8 and a[..., 0].min() == 0 and a[..., 2].max() == 255  # clipped
    assert not np.array_equal(grey_noise(img, 4), a)


def test_markdown_detector_rows_show_recall_and_landmark_error() -> None:
    row = {
        "variant": "int8 onnx",
        "backend": "onnxruntime",
        "ms_per_image": 21.5,
        "ap_dlib": 1.0,
        "recall_dlib": 1.0,
        "ap_masks": 0.4,
        "recall_masks": 0.52,
        "landmark_nme_dlib": 0.061,
        "landmark_nme_dlib_median": 0.052,
        "iou_mean": 0.93,
        "agree_iou_0.9": 0.8,
        "agree_iou_0.9_gt": 0.85,
        "meets_goals": None,
    }
    text = markdown({"detector": [row]})
    assert (
        "| AP dlib | recall dlib | AP masks | recall masks | landmark NME dlib | median |" in text
    )
    assert "| int8 onnx | onnxruntime | 21.5 | 1.0 | 1.0 | 0.4 | 0.52 | 0.061 | 0.052 |" in text


def test_detector_variants_add_a_float_onet_cascade_per_format(tmp_path) -> None:
    """Beside each complete format x precision set, INT8 P-/R-Net with the float O-Net (the
    landmark stage) is judged too."""
    from edgeface_tools.quantize.report import detector_variants

    arts = [
        {"model": f"mtcnn-{net}", "format": fmt, "precision": prec,
         "file": f"mtcnn-{net}-{prec}.{ext}"}
        for net in ("pnet", "rnet", "onet")
        for fmt, ext in (("onnx", "onnx"), ("tflite", "tflite"))
        for prec in ("fp32", "int8")
    ]  # fmt: skip
    out = detector_variants(tmp_path, arts)
    mixed = out["int8 P/R + fp32 O onnx"]
    assert mixed.backend == "onnxruntime"
    assert mixed.models["pnet"].endswith("mtcnn-pnet-int8.onnx")
    assert mixed.models["onet"].endswith("mtcnn-onet-fp32.onnx")
    assert "int8 P/R + fp32 O tflite" in out and "int8 onnx" in out and "fp32 tflite" in out
