"""LiteRT backend: float in / float out for float and integer models, resizing, bad files.

The TFLite files are built here from our own MTCNN weights (a few seconds each; TensorFlow is
in the tools extra), so the tests exercise the real converter output, not a fixture file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.backends import open_session
from edgeface.detector.networks import NumpyMTCNNSession
from edgeface.detector.normalize import normalize
from edgeface.errors import ModelError
from edgeface.imaging import load_image

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def mtcnn_npz(models_ready: None) -> Path:
    from edgeface.modelstore import resolve_model

    return resolve_model("mtcnn")


@pytest.fixture(scope="module")
def real_crops(shared_data: Path) -> np.ndarray:
    """24x24 normalized crops around real faces and background from a real photo."""
    import cv2

    img = load_image(shared_data / "detection" / "dlib_faces" / "2008_002470.jpg")
    x = normalize(img)
    h, w = x.shape[:2]
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(48):
        s = int(rng.integers(24, min(h, w) // 2))
        y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        crops.append(cv2.resize(x[y0 : y0 + s, x0 : x0 + s], (24, 24)))
    return np.stack(crops).astype(np.float32)


@pytest.fixture(scope="module")
def rnet_tflite(tmp_path_factory: pytest.TempPathFactory, mtcnn_npz: Path, real_crops: np.ndarray):
    from edgeface_tools.quantize.mtcnn_export import tflite_convert, write_onnx

    d = tmp_path_factory.mktemp("litert")
    f32, i8 = d / "rnet-fp32.tflite", d / "rnet-int8.tflite"
    write_onnx(mtcnn_npz, "rnet", d / "rnet.onnx")
    outs = {"fp32": f32, "int8": i8}
    # int8 I/O end to end (the heads quantized too: float heads need float I/O)
    tflite_convert(
        d / "rnet.onnx", "rnet", outs, calib=[real_crops[:32]], io_type="int8", float_heads=False
    )
    return f32, i8


@pytest.mark.slow
def test_float_tflite_matches_numpy_reference(rnet_tflite, mtcnn_npz, real_crops) -> None:
    session = open_session(rnet_tflite[0], "litert", threads=2)
    assert session.info.input_layout == "NHWC"
    assert session.info.input_shape == (None, 24, 24, 3)
    ref = NumpyMTCNNSession(mtcnn_npz, net="rnet").run(real_crops)
    out = session.run(real_crops)
    assert [o.shape for o in out] == [r.shape for r in ref]
    for o, r in zip(out, ref, strict=True):
        assert o.dtype == np.float32
        np.testing.assert_allclose(o, r, atol=1e-4)


@pytest.mark.slow
def test_int8_io_is_hidden_behind_float_run(rnet_tflite, mtcnn_npz, real_crops) -> None:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(rnet_tflite[1]))
    assert it.get_input_details()[0]["dtype"] == np.int8  # really integer I/O
    session = open_session(rnet_tflite[1], "litert")
    prob, box = session.run(real_crops)
    ref_prob, ref_box = NumpyMTCNNSession(mtcnn_npz, net="rnet").run(real_crops)
    assert prob.dtype == np.float32 and prob.shape == ref_prob.shape
    assert np.all((prob >= -0.01) & (prob <= 1.01))
    # dequantized outputs track the float net: the face / no-face decision rarely flips
    assert np.mean((prob > 0.7) == (ref_prob > 0.7)) >= 0.9
    assert np.corrcoef(box.ravel(), ref_box.ravel())[0, 1] > 0.9


@pytest.mark.slow
def test_batch_resize_and_dynamic_hw(tmp_path: Path, mtcnn_npz: Path, shared_data: Path) -> None:
    from edgeface_tools.quantize.mtcnn_export import tflite_convert, write_onnx

    out = tmp_path / "pnet.tflite"
    write_onnx(mtcnn_npz, "pnet", tmp_path / "pnet.onnx")
    tflite_convert(tmp_path / "pnet.onnx", "pnet", {"fp32": out})
    session = open_session(out, "litert")
    assert session.info.input_shape == (None, None, None, 3)
    ref = NumpyMTCNNSession(mtcnn_npz, net="pnet")
    img = normalize(load_image(shared_data / "detection" / "dlib_faces" / "2008_002470.jpg"))
    for h, w in ((61, 80), (33, 47), (61, 80)):
        x = np.ascontiguousarray(img[:h, :w][None])
        got, want = session.run(x), ref.run(x)
        assert got[0].shape == want[0].shape == (1, (h - 2 + 1) // 2 - 4, (w - 2 + 1) // 2 - 4)
        np.testing.assert_allclose(got[0], want[0], atol=1e-4)
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)


@pytest.mark.slow
def test_wrong_input_shape_is_model_error(rnet_tflite) -> None:
    session = open_session(rnet_tflite[0], "litert")
    with pytest.raises(ModelError, match="does not fit"):
        session.run(np.zeros((1, 48, 48, 3), np.float32))


def test_missing_and_corrupt_files_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        open_session(tmp_path / "nope.tflite", "litert")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelError, match="LiteRT cannot load"):
        open_session(bad, "litert")
