"""MTCNN P-Net / R-Net / O-Net as standalone ONNX and TFLite models, built from our .npz.

The graphs are written op by op from the pickle-free weight file (``models fetch mtcnn``)
rather than converted from the TF reference, so every step is visible and matches the NumPy
reference cascade exactly: valid convs, PReLU shared over H and W, TF-'same' max-pools
(padding at the end), and the Caffe flatten order (H and W swapped before the dense layer).

Outputs are what :mod:`edgeface.detector.stages` expects from any session, in this order:
P-Net ``[prob (N,H',W'), box (N,H',W',4)]``; R-Net ``[prob (N,), box (N,4)]``; O-Net
``[prob (N,), box (N,4), landmarks (N,10)]``, where ``prob`` is the softmax face probability.
ONNX models take NCHW input (P-Net with dynamic height and width), TFLite models NHWC.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, ModelError

NETS = ("pnet", "rnet", "onet")
INPUT_SIZE: dict[str, int | None] = {"pnet": None, "rnet": 24, "onet": 48}
#: (conv index, pool after it: (kernel, stride, "same"|"valid") or None)
BLOCKS: dict[str, list[tuple[int, tuple[int, int, str] | None]]] = {
    "pnet": [(1, (2, 2, "same")), (2, None), (3, None)],
    "rnet": [(1, (3, 2, "same")), (2, (3, 2, "valid")), (3, None)],
    "onet": [(1, (3, 2, "same")), (2, (3, 2, "valid")), (3, (2, 2, "same")), (4, None)],
}
DENSE = {"rnet": "fc4", "onet": "fc5"}
HEADS = {"pnet": ["box"], "rnet": ["box"], "onet": ["box", "landmarks"]}
OPSET = 17


def load_mtcnn_weights(npz: Path, net: str) -> dict[str, np.ndarray]:
    prefix = f"{net}."
    try:
        with np.load(npz, allow_pickle=False) as data:
            w = {k[len(prefix) :]: data[k].astype(np.float32) for k in data if k.startswith(prefix)}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{npz}: not a readable MTCNN weight file ({exc})") from exc
    if not w:
        raise ModelError(f"{npz}: has no '{net}' weights")
    return w


def build_onnx(npz: Path, net: str) -> Any:
    """The float ONNX model of one network (NCHW input, outputs as in the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    if net not in NETS:
        raise ConfigError(f"unknown MTCNN network '{net}'")
    w = load_mtcnn_weights(npz, net)
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr.copy(order="C"), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    x = "input"
    for i, pool in BLOCKS[net]:
        kern = const(f"conv{i}.w", w[f"conv{i}.w"].transpose(3, 2, 0, 1))
        x = node("Conv", [x, kern, const(f"conv{i}.b", w[f"conv{i}.b"])], f"conv{i}")
        slope = const(f"prelu{i}.slope", w[f"prelu{i}"].reshape(-1, 1, 1))
        x = node("PRelu", [x, slope], f"prelu{i}")
        if pool:
            k, s, pad = pool
            auto = "SAME_UPPER" if pad == "same" else "VALID"
            x = node("MaxPool", [x], f"pool{i}", kernel_shape=[k, k], strides=[s, s], auto_pad=auto)
    outputs: list[Any] = []
    if net == "pnet":
        score = node("Conv", [x, const("score.w", w["score.w"].transpose(3, 2, 0, 1)),
                              const("score.b", w["score.b"])], "score_logits")  # fmt: skip
        box = node("Conv", [x, const("box.w", w["box.w"].transpose(3, 2, 0, 1)),
                            const("box.b", w["box.b"])], "box_nchw")  # fmt: skip
        soft = node("Softmax", [score], "score_softmax", axis=1)
        node("Gather", [soft, const("face_index", np.array(1, np.int64))], "prob", axis=1)
        node("Transpose", [box], "box", perm=[0, 2, 3, 1])
        outputs = [
            helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", "H_out", "W_out"]),
            helper.make_tensor_value_info("box", TensorProto.FLOAT, ["N", "H_out", "W_out", 4]),
        ]
    else:
        fc = DENSE[net]
        x = node("Transpose", [x], "caffe_order", perm=[0, 3, 2, 1])  # NCHW -> N,W,H,C
        x = node("Flatten", [x], "flatten", axis=1)
        x = node("Gemm", [x, const(f"{fc}.w", w[f"{fc}.w"]), const(f"{fc}.b", w[f"{fc}.b"])], fc)
        x = node("PRelu", [x, const(f"prelu_{fc}.slope", w[f"prelu{fc[-1]}"].reshape(-1))],
                 f"prelu_{fc}")  # fmt: skip
        score = node("Gemm", [x, const("score.w", w["score.w"]), const("score.b", w["score.b"])],
                     "score_logits")  # fmt: skip
        soft = node("Softmax", [score], "score_softmax", axis=1)
        node("Gather", [soft, const("face_index", np.array(1, np.int64))], "prob", axis=1)
        outputs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N"])]
        for head in HEADS[net]:
            hw, hb = const(f"{head}.w", w[f"{head}.w"]), const(f"{head}.b", w[f"{head}.b"])
            node("Gemm", [x, hw, hb], head)
            outputs.append(
                helper.make_tensor_value_info(head, TensorProto.FLOAT, ["N", w[f"{head}.b"].size])
            )
    size = INPUT_SIZE[net]
    shape = ["N", 3, "H", "W"] if size is None else ["N", 3, size, size]
    graph = helper.make_graph(
        nodes,
        f"mtcnn_{net}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        outputs,
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeface"
    )
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model, full_check=True)
    return model


def head_nodes(model: Any) -> list[str]:
    """Names of the nodes after the trunk's last PRelu: the score / box / landmark heads.

    Why they stay float in the INT8 models: quantizing them rounds ``prob`` to steps of 1/255
    (softmax output) and the box offsets to their output scale, so most faces share the same
    few scores and the NMS after each stage, which ranks by score, keeps a different box than
    the float cascade; scores near the 0.6 / 0.7 thresholds also jump across them. The heads
    are a 1x1 conv (P-Net) or small dense layers: 0.8-3 % of each net's weights (see
    docs/quantization.md), computed in float from the dequantized INT8 trunk features.
    """
    nodes = list(model.graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type == "PRelu"), default=None)
    if last is None:
        raise ModelError("the MTCNN graph has no PRelu: not one of our exports")
    return [n.name for n in nodes[last + 1 :]]


def float_share(model: Any, float_nodes: list[str]) -> dict[str, int]:
    """Weights (Conv/Gemm kernels and biases) in the float nodes vs. in the whole model."""
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    total = sum(sizes.get(x, 0) for n in weighted for x in n.input[1:])
    kept = sum(sizes.get(x, 0) for n in weighted if n.name in float_nodes for x in n.input[1:])
    return {"float_weights": kept, "total_weights": total}


def write_onnx(npz: Path, net: str, out: Path) -> None:
    import onnx

    onnx.save(build_onnx(npz, net), str(out))


# ----------------------------------------------------------------------------------- TFLite


def tflite_calibration(
    net: str, batches: list[np.ndarray], window: int | None = None
) -> np.ndarray | list[np.ndarray]:
    """Representative NHWC inputs for the TFLite converter.

    R-Net and O-Net crops are used as they are (one array). P-Net gets the recorded whole
    pyramid levels (a list; its SavedModel has dynamic height and width). Measured (boxes
    with IoU >= 0.9 to float, GT faces, docs/quantization.md): INT8 P-Net alone 84 % vs 80 %,
    all three INT8 81 % vs 76 %, compared with calibrating on 48x48 windows cut from the
    levels (``window=48``, one fixed shape).
    """
    if net != "pnet":
        return np.concatenate(batches).astype(np.float32)
    if window is None:
        return [np.asarray(level, np.float32) for level in batches]
    rng = np.random.default_rng(0)
    windows = []
    for level in batches:
        h, w = level.shape[1:3]
        if h < window or w < window:
            continue
        for _ in range(4):
            y0, x0 = int(rng.integers(0, h - window + 1)), int(rng.integers(0, w - window + 1))
            windows.append(level[0, y0 : y0 + window, x0 : x0 + window])
    if not windows:
        raise ConfigError("no P-Net pyramid level is large enough to calibrate on")
    return np.stack(windows).astype(np.float32)


def tflite_convert(
    onnx_path: Path,
    net: str,
    outs: dict[str, Path],
    *,
    calib: list[np.ndarray] | None = None,
    io_type: str = "float32",
    float_heads: bool = True,
) -> dict[str, dict[str, Any]]:
    """TFLite files of one net from its float ONNX, via onnx2tf (NHWC, PReLU kept as PRELU).

    ``outs`` maps precision ("fp32", "fp16", "int8") to the file to write; returns the
    parameters of each for the manifest. With ``float_heads`` the INT8 file keeps the ops
    after the last PRELU (score / box / landmark heads, softmax) in float, for the reason
    given in :func:`head_nodes`.
    """
    from edgeface_tools.quantize.tflite import onnx_to_saved_model, saved_model_to_tflite

    params: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix=f"edgeface-{net}.") as work:
        saved = onnx_to_saved_model(Path(onnx_path), Path(work) / "saved_model")
        for precision, out in outs.items():
            rep = None
            if precision == "int8":
                if not calib:
                    raise ConfigError(f"INT8 TFLite {net} needs calibration inputs")
                rep = tflite_calibration(net, calib)
            tail = "PRELU" if precision == "int8" and float_heads else None
            params[precision] = saved_model_to_tflite(
                saved,
                out,
                precision=precision,
                calib_nhwc=rep,
                io_type=io_type,
                float_tail_after=tail,
            )
    return params
