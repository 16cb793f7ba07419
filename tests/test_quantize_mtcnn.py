"""MTCNN export: the ONNX / TFLite nets equal the NumPy reference; INT8 cascades still work.

Calibration inputs are recorded from the float cascade on real photos, as ``quantize build``
does; the agreement thresholds below are what 10 calibration images reach (the full run with
40 images is in docs/quantization.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from edgeface_tools.quantize.artifacts import MANIFEST_NAME, ArtifactDir
from edgeface_tools.quantize.mtcnn_export import build_onnx

from edgeface.backends import backend_for_format
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.detector.networks import NumpyMTCNNSession
from edgeface.detector.normalize import normalize
from edgeface.evaluation.detection import iou_matrix
from edgeface.imaging import load_image
from edgeface.modelstore import sha256_file


@pytest.fixture(scope="module")
def npz(models_ready: None) -> Path:
    from edgeface.modelstore import resolve_model

    return resolve_model("mtcnn")


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    return normalize(load_image(shared_data / "detection" / "dlib_faces" / "2008_001322.jpg"))


def _inputs(net: str, photo: np.ndarray) -> list[np.ndarray]:
    h, w = photo.shape[:2]
    if net == "pnet":  # whole pyramid levels of odd and even sizes
        return [cv2.resize(photo, (int(w * s), int(h * s)))[None] for s in (0.6, 0.31, 0.113)]
    size = 24 if net == "rnet" else 48
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(40):
        s = int(rng.integers(size, min(h, w) // 2))
        y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        crops.append(cv2.resize(photo[y0 : y0 + s, x0 : x0 + s], (size, size)))
    return [np.stack(crops)]


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_onnx_graph_equals_numpy_reference(net: str, npz: Path, photo: np.ndarray) -> None:
    model = build_onnx(npz, net)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = NumpyMTCNNSession(npz, net=net)
    for x in _inputs(net, photo):
        want = ref.run(x)
        got = session.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=2e-5)


def test_pnet_onnx_has_dynamic_height_and_width(npz: Path) -> None:
    dims = build_onnx(npz, "pnet").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, npz: Path):
    from edgeface_tools.quantize.build import build_mtcnn

    out = ArtifactDir(tmp_path_factory.mktemp("mtcnn"))
    names = build_mtcnn(
        out,
        shared_data / "detection" / "masks" / "images",
        images=10,
        log=lambda _m: None,
        progress=False,
    )
    return out, names


def _detector(out: ArtifactDir, fmt: str, precision: str) -> MTCNNDetector:
    backend = backend_for_format(fmt)
    models = {n: str(out.root / f"mtcnn-{n}-{precision}.{fmt}") for n in ("pnet", "rnet", "onet")}
    return MTCNNDetector(DetectorConfig(backend=backend, models=models))


def _agreement(det: MTCNNDetector, images: list[np.ndarray]) -> np.ndarray:
    ref = MTCNNDetector()
    ious: list[float] = []
    for img in images:
        want = np.array([f.box for f in ref.detect(img)]).reshape(-1, 4)
        got = np.array([f.box for f in det.detect(img)]).reshape(-1, 4)
        if len(want):
            ious += list(iou_matrix(want, got).max(axis=1) if len(got) else np.zeros(len(want)))
    return np.asarray(ious)


@pytest.fixture(scope="module")
def dlib_images(shared_data: Path) -> list[np.ndarray]:
    return [
        load_image(p) for p in sorted((shared_data / "detection" / "dlib_faces").glob("2*.jpg"))
    ]


@pytest.mark.slow
def test_build_writes_all_twelve_with_manifest(built) -> None:
    out, names = built
    assert len(names) == 12
    manifest = json.loads((out.root / MANIFEST_NAME).read_text())
    recs = {a["name"]: a for a in manifest["artifacts"]}
    assert set(recs) == set(names)
    for name, rec in recs.items():  # nothing rewrote an artifact after it was recorded
        assert rec["sha256"] == sha256_file(out.root / name), name
    assert recs["mtcnn-pnet-int8.onnx"]["calibration"]["images"] == 10
    assert recs["mtcnn-rnet-int8.tflite"]["calibration"]["rnet_crops"] > 100
    for n in ("pnet", "rnet", "onet"):
        f32 = (out.root / f"mtcnn-{n}-fp32.onnx").stat().st_size
        assert (out.root / f"mtcnn-{n}-int8.onnx").stat().st_size < 0.7 * f32


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_float_exports_reproduce_the_reference_cascade(built, dlib_images, fmt: str) -> None:
    ious = _agreement(_detector(built[0], fmt, "fp32"), dlib_images)
    assert len(ious) >= 40
    assert ious.min() > 0.999


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_cascade_still_finds_the_same_faces(built, dlib_images, fmt: str) -> None:
    ious = _agreement(_detector(built[0], fmt, "int8"), dlib_images)
    assert len(ious) >= 40
    assert np.mean(ious >= 0.5) >= 0.95  # the same faces are found ...
    assert np.mean(ious) >= 0.85  # ... with boxes close to the float ones


def _on_8bit_grid(x: np.ndarray) -> np.ndarray:
    """True where a value is a multiple of 1/255 or 1/256 (a quantized softmax output)."""
    return np.isclose(x * 255, np.round(x * 255), atol=1e-3) | np.isclose(
        x * 256, np.round(x * 256), atol=1e-3
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_heads_stay_float_so_scores_do_not_tie(built, dlib_images, fmt: str) -> None:
    """A quantized softmax gave nearly every face one of a few scores (steps of 1/255), and
    the score-ranked NMS then kept other boxes than float. The heads now compute in float."""
    out, _ = built
    det = _detector(out, fmt, "int8")
    scores = np.array([f.score for img in dlib_images for f in det.detect(img)])
    assert len(scores) >= 40
    assert np.mean(_on_8bit_grid(scores)) < 0.1
    assert len(np.unique(scores)) >= 0.95 * len(scores)
    recs = {a["name"]: a for a in json.loads((out.root / MANIFEST_NAME).read_text())["artifacts"]}
    for net in ("pnet", "rnet", "onet"):
        q = recs[f"mtcnn-{net}-int8.{fmt}"]["quantization"]
        if fmt == "onnx":
            assert "score_softmax" in q["excluded_nodes"] and "prob" in q["excluded_nodes"]
            share = q["float_share"]
            assert 0 < share["float_weights"] < 0.05 * share["total_weights"]  # trunk is INT8
        else:
            assert "SOFTMAX" in q["float_ops"] and "PRELU" not in q["float_ops"]


def test_calibration_records_every_pyramid_level_of_every_image(shared_data: Path) -> None:
    """``quantize build`` records through ``MTCNNDetector.recording``: with the default
    detector's helper process, every level of every image is in the record (before, the
    helper's share of levels and crops was never seen)."""
    from edgeface_tools.quantize.build import record_cascade_inputs

    from edgeface.detector import pyramid_scales

    paths = sorted((shared_data / "detection" / "dlib_faces").glob("*.jpg"))[:3]
    store = record_cascade_inputs(paths, max_crops=200, progress=False)
    expected = []
    for p in paths:
        h, w = load_image(p).shape[:2]
        expected += [(1, int(h * s), int(w * s), 3) for s in pyramid_scales(h, w, 20, 0.709)]
    assert [x.shape for x in store["pnet"]] == expected
    for net, size in (("rnet", 24), ("onet", 48)):
        crops = np.concatenate(store[net])
        assert crops.shape[1:] == (size, size, 3) and 0 < len(crops) <= 200
