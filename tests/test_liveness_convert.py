"""The MiniFASNet ONNX conversion: byte-reproducible, equal to an unfolded NumPy forward pass
of the upstream weights, and reproducing upstream's published outputs on the samples.

Upstream's sample outputs (shared/models/minifasnet/SOURCE.md, 3 decimals) come from crops of
upstream's RetinaFace box, which we do not have. On a 480x640 frame both networks get the
same full-width crop (SOURCE.md); its rows were recovered by searching every (top, bottom)
for the one whose output is closest to the published vector, and are kept in
``fixtures/minifasnet_upstream_crops.json``. That fits two numbers to four published ones
(two softmaxes with 3 classes each), so matching is a check, not a tautology.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.modelstore.manifest import get_entry

FIXTURE = Path(__file__).parent / "fixtures" / "minifasnet_upstream_crops.json"
FILES = {
    "minifasnet-v2": "2.7_80x80_MiniFASNetV2.pth",
    "minifasnet-v1se": "4_0_0_80x80_MiniFASNetV1SE.pth",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_models: Path) -> dict[str, Path]:
    from edgeface_tools.quantize.minifasnet_export import write_onnx

    d = tmp_path_factory.mktemp("minifasnet")
    out = {}
    for name, pth in FILES.items():
        out[name] = d / f"{name}.onnx"
        write_onnx(shared_models / "minifasnet" / pth, out[name])
    return out


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_build_is_byte_reproducible_and_pinned(built: dict[str, Path]) -> None:
    for name, path in built.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == get_entry(name).sha256, name


# ---------------------------------------------------------------- NumPy reference (unfolded)


def _conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    if w.shape[1] == 1 and w.shape[0] == x.shape[0] and x.shape[0] > 1:
        return np.einsum("chwij,cij->chw", win, w[:, 0])
    return np.einsum("chwij,ocij->ohw", win, w)


def _bn(x: np.ndarray, sd: dict, p: str) -> np.ndarray:
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean, var = sd[f"{p}.running_mean"].reshape(shape), sd[f"{p}.running_var"].reshape(shape)
    g, b = sd[f"{p}.weight"].reshape(shape), sd[f"{p}.bias"].reshape(shape)
    return (x - mean) / np.sqrt(var + 1e-5) * g + b


def _cb(x, sd, p, stride=1, act=True, pad=None):
    w = sd[f"{p}.conv.weight"]
    y = _bn(_conv(x, w, stride, w.shape[2] // 2 if pad is None else pad), sd, f"{p}.bn")
    if act:
        a = sd[f"{p}.prelu.weight"].reshape(-1, 1, 1)
        y = np.where(y > 0, y, a * y)
    return y


def _dw(x, sd, p, stride, residual):
    y = _cb(_cb(x, sd, f"{p}.conv"), sd, f"{p}.conv_dw", stride)
    y = _cb(y, sd, f"{p}.project", act=False)
    if f"{p}.se_module.fc1.weight" in sd:
        s = y.mean(axis=(1, 2), keepdims=True)
        s = np.maximum(_bn(_conv(s, sd[f"{p}.se_module.fc1.weight"], 1, 0), sd,
                           f"{p}.se_module.bn1"), 0)  # fmt: skip
        s = _bn(_conv(s, sd[f"{p}.se_module.fc2.weight"], 1, 0), sd, f"{p}.se_module.bn2")
        y = y / (1 + np.exp(-s))
    return x + y if residual else y


def reference_logits(sd: dict, x_chw: np.ndarray) -> np.ndarray:
    """Upstream MiniFASNet.forward in float64, BN unfolded (SOURCE.md, layer by layer)."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = _cb(x_chw.astype(np.float64), sd, "conv1", stride=2)
    x = _cb(x, sd, "conv2_dw")
    for down, stage in (("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5")):
        x = _dw(x, sd, down, 2, False)
        i = 0
        while f"{stage}.model.{i}.conv.conv.weight" in sd:
            x = _dw(x, sd, f"{stage}.model.{i}", 1, True)
            i += 1
    x = _cb(x, sd, "conv_6_sep")
    x = _cb(x, sd, "conv_6_dw", act=False, pad=0).reshape(-1)
    x = _bn(sd["linear.weight"] @ x, sd, "bn")
    return sd["prob.weight"] @ x


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def test_onnx_equals_unfolded_numpy_forward(built, shared_models: Path, detector) -> None:
    from edgeface_tools.quantize.minifasnet_export import load_state_dict

    from edgeface.liveness.crop import context_patch

    bgr = cv2.imread(str(shared_models / "minifasnet" / "samples" / "image_T1.jpg"))
    face = max(detector.detect(bgr[:, :, ::-1].copy()), key=lambda f: f.area)
    for (name, pth), scale in zip(FILES.items(), (2.7, 4.0), strict=True):
        x = context_patch(bgr, face.box, scale, 80).astype(np.float32).transpose(2, 0, 1)
        ours = _session(built[name]).run(None, {"input": x[None]})[0][0]
        ref = _softmax(reference_logits(load_state_dict(shared_models / "minifasnet" / pth), x))
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_upstream_sample_outputs_reproduced(built, shared_models: Path) -> None:
    crops = json.loads(FIXTURE.read_text())["crops"]
    sessions = [_session(built[n]) for n in FILES]
    for sample in crops:
        bgr = cv2.imread(str(shared_models / "minifasnet" / "samples" / sample["image"]))
        left, top, right, bottom = sample["crop"]
        patch = cv2.resize(bgr[top : bottom + 1, left : right + 1], (80, 80))
        x = patch.astype(np.float32).transpose(2, 0, 1)[None]
        summed = sum(s.run(None, {"input": x})[0][0] for s in sessions)
        np.testing.assert_allclose(summed, sample["upstream"], atol=sample["atol"])
        assert int(np.argmax(summed)) == int(np.argmax(sample["upstream"]))


def test_prelu_as_op_is_the_same_function(built, shared_models: Path) -> None:
    """The graph the INT8 TFLite build starts from: one PRelu per Max(x, slope * x), no
    MAXIMUM left, the same outputs on upstream's real crops."""
    import onnx
    from edgeface_tools.quantize.minifasnet_export import prelu_as_op

    crops = json.loads(FIXTURE.read_text())["crops"]
    for name, path in built.items():
        model = onnx.load(str(path))
        rewritten = prelu_as_op(model)
        kinds = [n.op_type for n in rewritten.graph.node]
        assert "Max" not in kinds and kinds.count("PRelu") == 33, name
        assert len(kinds) == len(model.graph.node) - 33  # each Mul + Max became one PRelu
        a, b = _session(path), _session_of(rewritten)
        for sample in crops:
            bgr = cv2.imread(str(shared_models / "minifasnet" / "samples" / sample["image"]))
            left, top, right, bottom = sample["crop"]
            patch = cv2.resize(bgr[top : bottom + 1, left : right + 1], (80, 80))
            x = {"input": patch.astype(np.float32).transpose(2, 0, 1)[None]}
            np.testing.assert_array_equal(a.run(None, x)[0], b.run(None, x)[0])


def test_prelu_as_op_refuses_a_graph_without_that_prelu() -> None:
    from edgeface_tools.quantize.minifasnet_export import prelu_as_op
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    with pytest.raises(ModelError, match="no Max"):
        prelu_as_op(helper.make_model(graph))


def _session_of(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_corrupt_checkpoint_is_a_model_error(tmp_path: Path, shared_models: Path) -> None:
    from edgeface_tools.quantize.minifasnet_export import write_onnx

    src = (shared_models / "minifasnet" / FILES["minifasnet-v2"]).read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(ModelError, match=r"bad\.pth"):
        write_onnx(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_float_build_needs_only_numpy_and_onnx(tmp_path: Path, shared_models: Path) -> None:
    """``models fetch`` builds it on a device: no TensorFlow, torch or ONNX Runtime imported."""
    import subprocess
    import sys

    out = tmp_path / "v1se.onnx"
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'torch', 'onnxruntime', 'onnx2tf'): sys.modules[m] = None\n"
        "from pathlib import Path\n"
        "from edgeface_tools.converters import minifasnet_onnx\n"
        f"minifasnet_onnx(Path({str(shared_models / 'minifasnet' / FILES['minifasnet-v1se'])!r}),"
        f" Path({str(out)!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == get_entry("minifasnet-v1se").sha256
