"""MiniFASNet (liveness) as a float ONNX graph, written op by op from the upstream ``.pth``.

The weights come from :func:`edgeface_tools.torch_checkpoint.state_dict` (restricted
unpickler, no torch). The layer order and strides follow upstream's ``MiniFASNet.py`` as
described in ``shared/models/minifasnet/SOURCE.md``; channel counts (the expansions differ
between MiniFASNetV2 and MiniFASNetV1SE) and the presence of SE gates are read from the
state_dict itself, so one builder serves both files.

BatchNorm is folded into the preceding conv / linear layer in float64 and stored as float32:
elementwise IEEE arithmetic only (no BLAS), so the bytes are the same on every machine and
the manifest can pin the output's sha256. Only numpy and onnx are needed (no TensorFlow), so
``edgeface models fetch`` can build it on the device.

Graph: input ``input`` ``[N, 3, 80, 80]`` float32, **BGR, raw 0-255** (no scaling);
output ``prob`` ``[N, 3]``, the softmax of upstream's three logits (index 1 = live).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ModelError

INPUT_SIZE = 80
OPSET = 17
BN_EPS = 1e-5
#: the stride-2 DW blocks, in graph order, each followed by its residual stage
STAGES: tuple[tuple[str, str | None], ...] = (
    ("conv_23", "conv_3"),
    ("conv_34", "conv_4"),
    ("conv_45", "conv_5"),
)
LIVE_INDEX = 1


def load_state_dict(pth: Path) -> dict[str, np.ndarray]:
    """The float tensors of an upstream checkpoint, ``module.`` prefix removed."""
    from edgeface_tools.torch_checkpoint import CheckpointError, state_dict

    try:
        raw = state_dict(pth, "module.")
    except (CheckpointError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{pth}: not a readable MiniFASNet checkpoint ({exc})") from exc
    out = {
        k: np.asarray(v)
        for k, v in raw.items()
        if not k.endswith("num_batches_tracked") and isinstance(v, np.ndarray)
    }
    if "conv1.conv.weight" not in out or "prob.weight" not in out:
        raise ModelError(f"{pth}: has no MiniFASNet layers (conv1 ... prob)")
    return out


def _bn_scale_shift(sd: Mapping[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    gamma = sd[f"{bn}.weight"].astype(np.float64)
    beta = sd[f"{bn}.bias"].astype(np.float64)
    mean = sd[f"{bn}.running_mean"].astype(np.float64)
    var = sd[f"{bn}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def fold_conv_bn(sd: Mapping[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with the BatchNorm after it folded in (float32)."""
    scale, shift = _bn_scale_shift(sd, bn)
    w = sd[f"{conv}.weight"].astype(np.float64) * scale[:, None, None, None]
    return w.astype(np.float32), shift.astype(np.float32)


class _Graph:
    """Collects nodes and initializers; every tensor is named after its upstream module."""

    def __init__(self, sd: Mapping[str, np.ndarray]) -> None:
        self.sd = sd
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn(self, x: str, module: str, *, stride: int = 1, act: bool = True) -> str:
        """CB (conv, BN, PReLU) or LB (conv, BN) of upstream; depthwise when in/groups = 1."""
        sd = self.sd
        conv = f"{module}.conv"
        w, b = fold_conv_bn(sd, conv, f"{module}.bn")
        k = w.shape[2]
        groups = w.shape[0] if w.shape[1] == 1 and w.shape[0] > 1 else 1
        pad = 0 if module == "conv_6_dw" or k == 1 else k // 2
        y = self.node(
            "Conv",
            [x, self.const(f"{conv}.w", w), self.const(f"{conv}.b", b)],
            conv,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )
        if act:
            y = self.prelu(y, module)
        return y

    def prelu(self, x: str, module: str) -> str:
        """Per-channel PReLU as ``Max(x, slope * x)``, exact for slopes <= 1.

        Why not the PRelu op: ONNX Runtime's PRelu with a (C, 1, 1) slope takes a generic
        broadcasting path that was 80 % of MiniFASNetV2's time (10.9 ms of 11.1 ms per face,
        batch 1, one thread); Mul + Max gave the same outputs bit for bit in 1.3 ms. For
        x >= 0, slope * x <= x; for x < 0, slope * x >= x, and both operands are the values
        PRelu itself would return. Every slope in both upstream files is in [-0.28, 0.59];
        a slope above 1 would break the identity, so it falls back to Relu(x) + slope * Min(x, 0).
        """
        slope = self.sd[f"{module}.prelu.weight"].astype(np.float32).reshape(-1, 1, 1)
        a = self.const(f"{module}.prelu.w", slope)
        if float(slope.max()) <= 1.0:
            scaled = self.node("Mul", [x, a], f"{module}.prelu.scaled")
            return self.node("Max", [x, scaled], f"{module}.prelu")
        zero = self.const(f"{module}.prelu.zero", np.zeros((), np.float32))
        pos = self.node("Relu", [x], f"{module}.prelu.pos")
        neg = self.node("Min", [x, zero], f"{module}.prelu.neg")
        scaled = self.node("Mul", [neg, a], f"{module}.prelu.scaled")
        return self.node("Add", [pos, scaled], f"{module}.prelu")

    def se(self, y: str, module: str) -> str:
        """Squeeze-excitation gate on the block's projected output (V1SE only)."""
        pooled = self.node("GlobalAveragePool", [y], f"{module}.pool")
        h = pooled
        for i, act in ((1, "Relu"), (2, "Sigmoid")):
            w, b = fold_conv_bn(self.sd, f"{module}.fc{i}", f"{module}.bn{i}")
            h = self.node(
                "Conv",
                [h, self.const(f"{module}.fc{i}.w", w), self.const(f"{module}.fc{i}.b", b)],
                f"{module}.fc{i}",
                kernel_shape=[1, 1],
            )
            h = self.node(act, [h], f"{module}.{act.lower()}")
        return self.node("Mul", [y, h], f"{module}.gate")

    def depth_wise(self, x: str, module: str, *, stride: int, residual: bool) -> str:
        y = self.conv_bn(x, f"{module}.conv")
        y = self.conv_bn(y, f"{module}.conv_dw", stride=stride)
        y = self.conv_bn(y, f"{module}.project", act=False)
        if f"{module}.se_module.fc1.weight" in self.sd:
            y = self.se(y, f"{module}.se_module")
        return self.node("Add", [x, y], f"{module}.add") if residual else y

    def residual_stage(self, x: str, stage: str) -> str:
        i = 0
        while f"{stage}.model.{i}.conv.conv.weight" in self.sd:
            x = self.depth_wise(x, f"{stage}.model.{i}", stride=1, residual=True)
            i += 1
        if i == 0:
            raise ModelError(f"checkpoint has no residual blocks in '{stage}'")
        return x


def build_onnx(pth: Path, name: str = "minifasnet") -> Any:
    """The float ONNX model of one MiniFASNet checkpoint (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    sd = load_state_dict(pth)
    g = _Graph(sd)
    try:
        x = g.conv_bn("input", "conv1", stride=2)
        x = g.conv_bn(x, "conv2_dw")
        for down, stage in STAGES:
            x = g.depth_wise(x, down, stride=2, residual=False)
            if stage is not None:
                x = g.residual_stage(x, stage)
        x = g.conv_bn(x, "conv_6_sep")
        x = g.conv_bn(x, "conv_6_dw", act=False)
        x = g.node("Flatten", [x], "flatten", axis=1)
        # Linear (no bias) + BatchNorm1d, folded; Dropout is a no-op at inference.
        scale, shift = _bn_scale_shift(sd, "bn")
        lin = (sd["linear.weight"].astype(np.float64) * scale[:, None]).astype(np.float32)
        x = g.node(
            "Gemm",
            [x, g.const("linear.w", lin), g.const("linear.b", shift.astype(np.float32))],
            "linear",
            transB=1,
        )
        prob_w = sd["prob.weight"].astype(np.float32)
        classes = prob_w.shape[0]
        zero = np.zeros(classes, np.float32)
        x = g.node("Gemm", [x, g.const("prob.w", prob_w), g.const("prob.b", zero)], "logits",
                   transB=1)  # fmt: skip
    except KeyError as exc:
        raise ModelError(f"{pth}: MiniFASNet layer {exc} missing from the checkpoint") from exc
    g.node("Softmax", [x], "prob", axis=1)
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 80, 80])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", classes])],
        g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeface"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(pth: Path, out: Path) -> None:
    import onnx

    onnx.save(build_onnx(pth), str(out))


def prelu_as_op(model: Any) -> Any:
    """A copy of a float MiniFASNet graph with every ``Max(x, Mul(x, slope))`` written back as
    one ``PRelu(x, slope)`` (the same function; only the INT8 TFLite build uses it).

    Why: the TFLite quantizer gives ``MAXIMUM``'s inputs the scale of its output, so the
    conv before it inherits the range of the PReLU's *output*, which lacks the conv's large
    negative values (they are shrunk by the slope). Those values were clipped and the INT8
    pair's live scores drifted (mean |score difference| to float 0.036 on the development
    faces, CelebA-Spoof slice APCER 24.1 % vs 21.3 %). A ``PRELU`` op kept float between
    INT8 convs lets every conv keep its own calibrated range (docs/liveness.md).
    """
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    initializers = {i.name for i in graph.initializer}
    folded: set[str] = set()  # outputs of the Mul nodes that became part of a PRelu
    prelus: dict[str, Any] = {}  # Max node name -> its PRelu
    for n in graph.node:
        mul = producers.get(n.input[1]) if n.op_type == "Max" and len(n.input) == 2 else None
        if (
            mul is not None
            and mul.op_type == "Mul"
            and mul.input[0] == n.input[0]
            and mul.input[1] in initializers
            and consumers.get(mul.output[0]) == 1
        ):
            folded.add(mul.output[0])
            prelus[n.name] = helper.make_node(
                "PRelu", [n.input[0], mul.input[1]], list(n.output), name=n.name
            )
    if not prelus:
        raise ModelError("no Max(x, Mul(x, slope)) PReLU in this graph: not a MiniFASNet of ours")
    nodes = []
    for n in graph.node:
        if n.op_type == "Mul" and n.output[0] in folded:
            continue
        if n.op_type == "Max" and n.name in prelus:
            nodes.append(prelus[n.name])
        else:
            kept = onnx.NodeProto()
            kept.CopyFrom(n)
            nodes.append(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out, full_check=True)
    return out
