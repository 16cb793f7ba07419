"""EdgeFace (timm EdgeNeXt, 512-d head) checkpoint -> float ONNX, written op by op.

Why not torch.onnx: the quickstart and device installs carry neither torch nor timm, yet
``edgeface models fetch`` must build the default embedder there. The graph is therefore
written with the ``onnx`` helper API from the weights that :mod:`torch_checkpoint` reads,
every Linear dequantized from its stored int8 weight. The build is deterministic (fixed node
and initializer order, no timestamps), so the manifest can pin the sha256 of the result.

The architecture (channel widths, depths, kernel sizes, heads, split scales, which block
has the positional encoding) is read from the state_dict's shapes, so the same code builds
EdgeFace-XS (``edgenext_x_small``) and EdgeFace-XXS (``edgenext_xx_small``).

Graph layout: NCHW for the convolutions, NHWC (channels last) around every LayerNorm and
pointwise MLP, exactly where timm permutes. GELU is the exact (erf) form, written as
``0.5 * x * (1 + erf(x / sqrt 2))`` so that converters without a Gelu op (opset < 20) read it.
The input is a batch of 112x112 RGB faces preprocessed as ``x / 127.5 - 1``; the batch
dimension is symbolic; the output is the raw (not normalized) 512-d embedding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ModelError

OPSET = 17
INPUT_SIZE = 112
LN_EPS = 1e-6
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"


@dataclass(frozen=True)
class StageSpec:
    """One EdgeNeXt stage as found in the weights."""

    index: int
    dim: int
    conv_blocks: int
    kernel: int
    #: number of split-transpose (SDTA) blocks at the end of the stage (0 or 1 in timm)
    sdta_blocks: int
    heads: int
    scales: int
    pos_embd: bool
    downsample: bool


def _linear(sd: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight (out, in), bias (out,)) of a Linear, dequantized when stored as int8."""
    packed = sd.get(f"{name}._packed_params._packed_params")
    if packed is not None:
        weight, bias = packed
        w = weight.dequantize() if hasattr(weight, "dequantize") else np.asarray(weight)
        return np.asarray(w, np.float32), np.asarray(bias, np.float32)
    if f"{name}.weight" in sd:
        weight, bias = sd[f"{name}.weight"], sd[f"{name}.bias"]
        return np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    raise ModelError(f"the checkpoint has no Linear '{name}'")


def describe(sd: dict[str, Any]) -> list[StageSpec]:
    """The stages of the EdgeNeXt in ``sd`` (keys without the ``model.`` prefix)."""
    stages: list[StageSpec] = []
    for s in range(4):
        blocks = sorted(
            {int(m.group(1)) for k in sd if (m := re.match(rf"stages\.{s}\.blocks\.(\d+)\.", k))}
        )
        if not blocks:
            raise ModelError(f"the checkpoint has no stage {s}: not an EdgeNeXt state_dict")
        conv = [b for b in blocks if f"stages.{s}.blocks.{b}.conv_dw.weight" in sd]
        sdta = [b for b in blocks if f"stages.{s}.blocks.{b}.xca.temperature" in sd]
        if conv != blocks[: len(conv)] or len(conv) + len(sdta) != len(blocks):
            raise ModelError(f"stage {s}: unexpected block order {blocks}")
        dim = int(sd[f"stages.{s}.blocks.0.norm.weight"].shape[0])
        kernel = int(sd[f"stages.{s}.blocks.0.conv_dw.weight"].shape[-1]) if conv else 3
        heads, scales, pos = 1, 1, False
        if sdta:
            b = f"stages.{s}.blocks.{sdta[0]}"
            heads = int(sd[f"{b}.xca.temperature"].shape[0])
            n_convs = sum(1 for k in sd if re.match(rf"{re.escape(b)}\.convs\.\d+\.weight$", k))
            scales = n_convs + 1
            pos = f"{b}.pos_embd.token_projection.weight" in sd
        stages.append(
            StageSpec(
                index=s,
                dim=dim,
                conv_blocks=len(conv),
                kernel=kernel,
                sdta_blocks=len(sdta),
                heads=heads,
                scales=scales,
                pos_embd=pos,
                downsample=f"stages.{s}.downsample.1.weight" in sd,
            )
        )
    return stages


def fourier_position_encoding(
    height: int, width: int, weight: np.ndarray, bias: np.ndarray, hidden: int = 32
) -> np.ndarray:
    """EdgeNeXt's sine/cosine position encoding after its 1x1 projection: (H*W, C) float32.

    It depends only on the (fixed) feature-map size, so it is a constant of the graph.
    """
    # float64 throughout, rounded once at the end: float32 sin/cos and BLAS sums differ in
    # the last bit between CPUs and thread counts, which would change the file's sha256.
    scale, eps, temperature = 2 * math.pi, 1e-6, 10000.0
    y = np.arange(1, height + 1, dtype=np.float64)[:, None].repeat(width, 1)
    x = np.arange(1, width + 1, dtype=np.float64)[None, :].repeat(height, 0)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = temperature ** (2 * np.floor(np.arange(hidden) / 2) / hidden)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = np.stack((np.sin(px[..., 0::2]), np.cos(px[..., 1::2])), axis=3).reshape(height, width, -1)
    py = np.stack((np.sin(py[..., 0::2]), np.cos(py[..., 1::2])), axis=3).reshape(height, width, -1)
    pos = np.concatenate((py, px), axis=2).reshape(-1, 1, 2 * hidden)  # (H*W, 1, 2*hidden)
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)[None]  # (1, C, 2*hidden)
    proj = (pos * w).sum(axis=2) + bias.astype(np.float64)  # no BLAS: same sums everywhere
    return proj.astype(np.float32)  # (H*W, C)


class _Graph:
    """Collects nodes and initializers in build order (the order fixes the file's bytes)."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.array(arr, order="C"), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def ints(self, name: str, values: list[int]) -> str:
        return self.const(name, np.asarray(values, np.int64))

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.asarray(value, np.float32))


#: Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-z^2) for z >= 0,
#: t = 1 / (1 + p z); absolute error <= 1.5e-7, below float32 rounding of GELU's output
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
ERF_MODES = ("op", "polynomial")


class _EdgeNeXtBuilder:
    def __init__(self, sd: dict[str, Any], erf: str = "op") -> None:
        if erf not in ERF_MODES:
            raise ValueError(f"erf must be one of {ERF_MODES}")
        self.sd = sd
        self.erf = erf
        self.g = _Graph()
        self.half = self.g.scalar("const.half", 0.5)
        self.one = self.g.scalar("const.one", 1.0)
        self.sqrt2 = self.g.scalar("const.sqrt2", math.sqrt(2.0))
        self.to_nhwc = [0, 2, 3, 1]
        self.to_nchw = [0, 3, 1, 2]

    def w(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.sd[key], np.float32)
        except KeyError:
            raise ModelError(f"the checkpoint lacks '{key}'") from None

    # -- layers -------------------------------------------------------------------------
    def conv(self, x: str, prefix: str, name: str, *, stride: int = 1, groups: int = 1) -> str:
        g = self.g
        weight = self.w(f"{prefix}.weight")
        k = int(weight.shape[-1])
        pad = 0 if stride > 1 else k // 2
        return g.node(
            "Conv",
            [x, g.const(f"{prefix}.weight", weight),
             g.const(f"{prefix}.bias", self.w(f"{prefix}.bias"))],
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )  # fmt: skip

    def layer_norm(self, x: str, prefix: str, name: str) -> str:
        """LayerNorm over the last axis (channels-last tensors)."""
        g = self.g
        return g.node(
            "LayerNormalization",
            [x, g.const(f"{prefix}.weight", self.w(f"{prefix}.weight")),
             g.const(f"{prefix}.bias", self.w(f"{prefix}.bias"))],
            name,
            axis=-1,
            epsilon=LN_EPS,
        )  # fmt: skip

    def layer_norm_2d(self, x: str, prefix: str, name: str) -> str:
        """timm's LayerNorm2d: LayerNorm over channels of an NCHW tensor."""
        t = self.g.node("Transpose", [x], f"{name}.to_nhwc", perm=self.to_nhwc)
        n = self.layer_norm(t, prefix, f"{name}.ln")
        return self.g.node("Transpose", [n], name, perm=self.to_nchw)

    def linear(self, x: str, prefix: str, name: str) -> str:
        g = self.g
        weight, bias = _linear(self.sd, prefix)
        y = g.node("MatMul", [x, g.const(f"{prefix}.weight_t", weight.T.copy())], f"{name}.matmul")
        return g.node("Add", [y, g.const(f"{prefix}.bias", bias)], name)

    def erf_polynomial(self, z: str, name: str) -> str:
        """erf from Abs, Exp, Sign and arithmetic: TFLite has no Erf builtin (the converter
        refuses ``tf.Erf``), and the tanh form of GELU is a different function."""
        g = self.g
        if not hasattr(self, "erf_consts"):
            self.erf_consts = [g.scalar("const.erf_p", ERF_P), g.scalar("const.minus_one", -1.0)]
            self.erf_consts += [g.scalar(f"const.erf_a{i + 1}", a) for i, a in enumerate(ERF_A)]
        p, minus_one, *a = self.erf_consts
        mag = g.node("Abs", [z], f"{name}.abs")
        t = g.node("Add", [g.node("Mul", [mag, p], f"{name}.pz"), self.one], f"{name}.den")
        t = g.node("Div", [self.one, t], f"{name}.t")
        h = g.node("Mul", [t, a[4]], f"{name}.h4")
        for i in (3, 2, 1, 0):
            h = g.node("Add", [h, a[i]], f"{name}.h{i}.add")
            h = g.node("Mul", [h, t], f"{name}.h{i}")
        sq = g.node("Mul", [mag, mag], f"{name}.sq")
        ex = g.node("Exp", [g.node("Mul", [sq, minus_one], f"{name}.neg_sq")], f"{name}.exp")
        one_minus = g.node(
            "Sub", [self.one, g.node("Mul", [h, ex], f"{name}.tail")], f"{name}.abs_erf"
        )
        return g.node("Mul", [g.node("Sign", [z], f"{name}.sign"), one_minus], f"{name}.erf")

    def gelu(self, x: str, name: str) -> str:
        g = self.g
        d = g.node("Div", [x, self.sqrt2], f"{name}.div")
        if self.erf == "op":
            e = g.node("Erf", [d], f"{name}.erf")
        else:
            e = self.erf_polynomial(d, f"{name}.erf_poly")
        a = g.node("Add", [e, self.one], f"{name}.add")
        m = g.node("Mul", [x, a], f"{name}.mul")
        return g.node("Mul", [m, self.half], name)

    def mlp_tail(self, x_nhwc: str, prefix: str, name: str) -> str:
        """norm -> fc1 -> GELU -> fc2 -> layer scale (channels last)."""
        g = self.g
        n = self.layer_norm(x_nhwc, f"{prefix}.norm", f"{name}.norm")
        h = self.linear(n, f"{prefix}.mlp.fc1", f"{name}.fc1")
        h = self.gelu(h, f"{name}.gelu")
        h = self.linear(h, f"{prefix}.mlp.fc2", f"{name}.fc2")
        gamma = g.const(f"{prefix}.gamma", self.w(f"{prefix}.gamma"))
        return g.node("Mul", [h, gamma], f"{name}.gamma")

    # -- blocks -------------------------------------------------------------------------
    def conv_block(self, x: str, prefix: str, name: str, dim: int) -> str:
        g = self.g
        y = self.conv(x, f"{prefix}.conv_dw", f"{name}.dw", groups=dim)
        y = g.node("Transpose", [y], f"{name}.to_nhwc", perm=self.to_nhwc)
        y = self.mlp_tail(y, prefix, name)
        y = g.node("Transpose", [y], f"{name}.to_nchw", perm=self.to_nchw)
        return g.node("Add", [x, y], name)

    def sdta_block(self, x: str, prefix: str, name: str, spec: StageSpec, hw: int) -> str:
        g = self.g
        dim, heads, scales = spec.dim, spec.heads, spec.scales
        width = -(-dim // scales)  # torch.chunk: ceil-sized pieces, the last one smaller
        sizes = [width] * (scales - 1) + [dim - width * (scales - 1)]
        parts = [f"{name}.split{i}" for i in range(scales)]
        g.nodes.append(
            g.helper.make_node(
                "Split", [x, g.ints(f"{name}.split_sizes", sizes)], parts, name=f"{name}.split",
                axis=1,
            )
        )  # fmt: skip
        outs: list[str] = []
        sp = parts[0]
        for i in range(scales - 1):
            if i > 0:
                sp = g.node("Add", [sp, parts[i]], f"{name}.carry{i}")
            sp = self.conv(sp, f"{prefix}.convs.{i}", f"{name}.conv{i}", groups=width)
            outs.append(sp)
        outs.append(parts[-1])
        y = g.node("Concat", outs, f"{name}.concat", axis=1)
        # tokens (B, N, C)
        t = g.node("Reshape", [y, g.ints(f"{name}.bcn_shape", [0, dim, hw * hw])], f"{name}.flat")
        t = g.node("Transpose", [t], f"{name}.tokens", perm=[0, 2, 1])
        if spec.pos_embd:
            pos = fourier_position_encoding(
                hw,
                hw,
                self.w(f"{prefix}.pos_embd.token_projection.weight"),
                self.w(f"{prefix}.pos_embd.token_projection.bias"),
            )
            t = g.node("Add", [t, g.const(f"{prefix}.pos_embd.table", pos[None])], f"{name}.pos")
        # cross-covariance attention: channels attend to channels, per head
        n = self.layer_norm(t, f"{prefix}.norm_xca", f"{name}.norm_xca")
        qkv = self.linear(n, f"{prefix}.xca.qkv", f"{name}.qkv")
        head_dim = dim // heads
        qkv = g.node(
            "Reshape", [qkv, g.ints(f"{name}.qkv_shape", [0, hw * hw, 3, heads, head_dim])],
            f"{name}.qkv5",
        )  # fmt: skip
        qkv = g.node("Transpose", [qkv], f"{name}.qkv_t", perm=[2, 0, 3, 4, 1])  # 3,B,h,d,N
        qkv_parts = []
        for i, part in enumerate(("q", "k", "v")):
            idx = g.const(f"{name}.{part}_index", np.asarray(i, np.int64))
            qkv_parts.append(g.node("Gather", [qkv, idx], f"{name}.{part}", axis=0))
        q, k, v = qkv_parts
        eps = g.scalar(f"{name}.l2_eps", 1e-12)

        def l2_normalize(z: str, tag: str) -> str:
            norm = g.node("ReduceL2", [z], f"{name}.{tag}_norm", axes=[-1], keepdims=1)
            norm = g.node("Max", [norm, eps], f"{name}.{tag}_norm_clamped")
            return g.node("Div", [z, norm], f"{name}.{tag}_unit")

        qn, kn = l2_normalize(q, "q"), l2_normalize(k, "k")
        kt = g.node("Transpose", [kn], f"{name}.k_t", perm=[0, 1, 3, 2])
        attn = g.node("MatMul", [qn, kt], f"{name}.attn_logits")
        temp = g.const(f"{prefix}.xca.temperature", self.w(f"{prefix}.xca.temperature"))
        attn = g.node("Mul", [attn, temp], f"{name}.attn_scaled")
        attn = g.node("Softmax", [attn], f"{name}.attn", axis=-1)
        o = g.node("MatMul", [attn, v], f"{name}.attn_v")  # B,h,d,N
        o = g.node("Transpose", [o], f"{name}.attn_v_t", perm=[0, 3, 1, 2])  # B,N,h,d
        o = g.node("Reshape", [o, g.ints(f"{name}.bnc_shape", [0, hw * hw, dim])], f"{name}.heads")
        o = self.linear(o, f"{prefix}.xca.proj", f"{name}.proj")
        gx = g.const(f"{prefix}.gamma_xca", self.w(f"{prefix}.gamma_xca"))
        o = g.node("Mul", [o, gx], f"{name}.gamma_xca")
        t = g.node("Add", [t, o], f"{name}.xca_residual")
        # inverted bottleneck, channels last
        t = g.node("Reshape", [t, g.ints(f"{name}.bhwc_shape", [0, hw, hw, dim])], f"{name}.bhwc")
        t = self.mlp_tail(t, prefix, name)
        t = g.node("Transpose", [t], f"{name}.to_nchw", perm=self.to_nchw)
        return g.node("Add", [x, t], name)

    # -- network ------------------------------------------------------------------------
    def build(self) -> Any:
        from onnx import TensorProto

        g = self.g
        stages = describe(self.sd)
        x = self.conv(INPUT_NAME, "stem.0", "stem.conv", stride=4)
        x = self.layer_norm_2d(x, "stem.1", "stem.norm")
        hw = INPUT_SIZE // 4
        for spec in stages:
            s = spec.index
            if spec.downsample:
                x = self.layer_norm_2d(x, f"stages.{s}.downsample.0", f"s{s}.down.norm")
                x = self.conv(x, f"stages.{s}.downsample.1", f"s{s}.down.conv", stride=2)
                hw //= 2
            for b in range(spec.conv_blocks):
                x = self.conv_block(x, f"stages.{s}.blocks.{b}", f"s{s}.b{b}", spec.dim)
            for b in range(spec.conv_blocks, spec.conv_blocks + spec.sdta_blocks):
                x = self.sdta_block(x, f"stages.{s}.blocks.{b}", f"s{s}.b{b}", spec, hw)
        x = g.node("GlobalAveragePool", [x], "head.pool")
        x = g.node("Flatten", [x], "head.flatten", axis=1)
        x = self.layer_norm(x, "head.norm", "head.norm")
        self.linear(x, "head.fc", OUTPUT_NAME)
        out_dim = _linear(self.sd, "head.fc")[1].shape[0]
        graph = g.helper.make_graph(
            g.nodes,
            "edgeface_edgenext",
            [g.helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
            [g.helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", out_dim])],
            g.inits,
        )  # fmt: skip
        model = g.helper.make_model(
            graph, opset_imports=[g.helper.make_opsetid("", OPSET)], producer_name="edgeface"
        )
        model.ir_version = 8
        import onnx

        onnx.checker.check_model(model, full_check=True)
        return model


def load_edgeface_state_dict(checkpoint: Path) -> dict[str, Any]:
    """The EdgeNeXt weights of an EdgeFace checkpoint (``model.`` prefix removed)."""
    from edgeface_tools.torch_checkpoint import CheckpointError, state_dict

    try:
        sd = state_dict(Path(checkpoint), "model.")
    except (CheckpointError, OSError) as exc:
        raise ModelError(f"{checkpoint}: not a readable EdgeFace checkpoint ({exc})") from exc
    if "stem.0.weight" not in sd:
        raise ModelError(f"{checkpoint}: no 'model.stem.0.weight': not an EdgeFace checkpoint")
    return dict(sd)


def build_onnx(checkpoint: Path, erf: str = "op") -> Any:
    """The float ONNX model (dynamic batch) of an EdgeFace ``torch.save`` checkpoint.

    ``erf="polynomial"`` writes GELU's erf from builtin-friendly ops, for the TFLite
    conversion (same outputs to ~1e-6); the manifest's file uses the ONNX ``Erf`` op.
    """
    return _EdgeNeXtBuilder(load_edgeface_state_dict(checkpoint), erf).build()


def write_onnx(checkpoint: Path, out: Path, erf: str = "op") -> None:
    import onnx

    onnx.save(build_onnx(checkpoint, erf), str(out))
