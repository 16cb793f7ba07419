"""Bad input to ``edgeface quantize``: clear one-line errors, and never a half artifact."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from edgeface_tools.quantize.artifacts import MANIFEST_NAME, ArtifactDir
from edgeface_tools.quantize.onnx_int8 import load_onnx_checked

from edgeface.cli.main import main
from edgeface.errors import ConfigError, ModelError, NoFaceError, StorageError


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("edgeface: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_calibration_dir_without_faces(tmp_path: Path, capsys, models_ready: None) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # real image files, but landscapes of noise and flat colour, no faces
        img = rng.integers(0, 255, (120, 160, 3), np.uint8) if i % 2 else np.full((90, 90, 3), 90)
        cv2.imwrite(str(photos / f"img{i}.png"), np.asarray(img, np.uint8))
    (photos / "notes.txt").write_text("not an image")
    code = main(
        [
            "quantize",
            "build",
            "--out",
            str(tmp_path / "out"),
            "--calib-dir",
            str(photos),
            "--what",
            "mobilefacenet",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == NoFaceError.exit_code
    line = _one_error_line(capsys)
    assert "found 0 face(s) in 4 image(s)" in line
    assert not any((tmp_path / "out").glob("*.onnx"))


def test_calibration_dir_that_is_empty_or_missing(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    args = ["quantize", "build", "--out", str(tmp_path / "o"), "--what", "mobilefacenet"]
    assert main([*args, "--calib-dir", str(tmp_path / "empty")]) == NoFaceError.exit_code
    assert "contains no image files" in _one_error_line(capsys)
    assert main([*args, "--calib-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert main(args) == 2  # no calibration photos named at all
    assert "--calib-dir is needed" in _one_error_line(capsys)
    mtcnn_only = ["quantize", "build", "--out", str(tmp_path / "o"), "--what", "mtcnn"]
    assert main(mtcnn_only) == 2
    assert "--mtcnn-calib-dir or --calib-dir is needed" in _one_error_line(capsys)


def test_corrupt_float_model(
    tmp_path: Path, capsys, lfw_dir: Path, models_ready: None, shared_models: Path
) -> None:
    bad = tmp_path / "broken.onnx"
    good = shared_models
    data = (good / "mobilefacenet_foamliu" / "MobileFaceNet.onnx").read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # a truncated download
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_onnx_checked(bad)
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted((lfw_dir / "images").glob("A*/*_0001.jpg"))[:6]:
        (calib / p.name).symlink_to(p)
    code = main(
        [
            "quantize",
            "build",
            "--out",
            str(tmp_path / "out"),
            "--calib-dir",
            str(calib),
            "--faces",
            "4",
            "--min-faces",
            "2",
            "--what",
            "mobilefacenet",
            "--float-model",
            str(bad),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == ModelError.exit_code
    assert "not a valid ONNX model" in _one_error_line(capsys)
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written, no manifest


def test_output_dir_not_writable(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a directory cannot be created below a file, even by root
    with pytest.raises(StorageError, match="not writable"):
        ArtifactDir(blocker / "out")
    code = main(["quantize", "build", "--out", str(blocker / "out"), "--calib-dir", str(tmp_path)])
    assert code == StorageError.exit_code
    assert "not writable" in _one_error_line(capsys)


def test_interrupted_run_leaves_no_final_name(tmp_path: Path) -> None:
    out = ArtifactDir(tmp_path / "out")
    with out.staging("model.onnx") as tmp:
        tmp.write_bytes(b"complete model")
    out.record_file(
        "model.onnx",
        "model.onnx",
        model="m",
        format="onnx",
        precision="int8",
        source="s",
        source_sha256="0",
        input_layout="NCHW",
    )
    before = (out.root / "model.onnx").read_bytes()
    with pytest.raises(KeyboardInterrupt), out.staging("model.onnx") as tmp:
        tmp.write_bytes(b"half a mod")  # Ctrl-C in the middle of a rebuild
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError), out.staging("other.tflite") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("converter crashed")
    names = sorted(p.name for p in out.root.iterdir())
    assert names == [MANIFEST_NAME, "model.onnx"]  # no temp dirs, no other.tflite
    assert (out.root / "model.onnx").read_bytes() == before  # the good artifact survived
    assert ArtifactDir(out.root).records["model.onnx"].size == len(before)


def test_converter_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    out = ArtifactDir(tmp_path)
    with pytest.raises(StorageError, match="produced no file"), out.staging("x.tflite"):
        pass
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("kept", [{"float_tail_after": "PRELU"}, {"float_ops": ("PRELU",)}])
def test_float_ops_with_integer_io_are_refused_before_converting(
    tmp_path: Path, kept: dict[str, object]
) -> None:
    """Ops kept float cannot end in int8 outputs; say so instead of a converter stack trace."""
    from edgeface_tools.quantize.tflite import saved_model_to_tflite

    calib = np.zeros((2, 12, 12, 3), np.float32)
    with pytest.raises(ConfigError, match="kept float need float32"):
        saved_model_to_tflite(
            tmp_path / "no_model",
            tmp_path / "x.tflite",
            precision="int8",
            calib_nhwc=calib,
            io_type="int8",
            **kept,  # type: ignore[arg-type]
        )
    assert not (tmp_path / "x.tflite").exists()


def test_head_nodes_of_a_graph_without_prelu_is_a_model_error(tmp_path: Path) -> None:
    import onnx
    from edgeface_tools.quantize.mtcnn_export import head_nodes
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
    with pytest.raises(ModelError, match="no PRelu"):
        head_nodes(helper.make_model(graph))
    assert onnx  # the graph is a real ONNX model, not a stand-in
