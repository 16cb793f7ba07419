"""INT8 quantization of an ONNX model with ONNX Runtime: static (QDQ, per-channel weights,
calibrated activation ranges) or, with ``method="dynamic"``, dynamic (int8 weights, activation
ranges taken per call at run time; no calibration data).

Why these defaults (measured on MobileFaceNet, numbers in docs/quantization.md): plain
per-channel MinMax ranges are stretched by a few outlier activations and cost ~0.8 points of
TAR at FAR 1e-3; a histogram method (Percentile / Entropy) clips those outliers. The first
conv (raw pixels) and the last projection (the embedding itself) are the layers whose
rounding error reaches the embedding most directly, so they can be kept in float with
``keep_float``. QDQ is the format ONNX Runtime fuses into integer kernels on every execution
provider (CPU, CUDA, TensorRT), which is what makes the same file portable to a Jetson.

Dynamic quantization is for MatMul-heavy models such as EdgeFace: a transformer block's
activations (after GELU, say) vary too much from face to face for one calibrated range, and
ONNX Runtime runs its dynamic MatMuls faster than the QDQ ones on this CPU (docs/embedders.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, ModelError

METHODS = ("minmax", "entropy", "percentile", "dynamic")
QTYPES = ("qint8", "quint8")


@dataclass
class OnnxInt8Options:
    """Everything that changes the bytes of the INT8 model; recorded in the artifact manifest."""

    method: str = "percentile"
    percentile: float = 99.999
    activation_type: str = "quint8"
    weight_type: str = "qint8"
    per_channel: bool = True
    reduce_range: bool = False
    keep_float: Sequence[str] = ()  # subset of {"first", "last"}
    exclude_nodes: Sequence[str] = ()
    #: op types to quantize (empty: ONNX Runtime's default, every op it can quantize)
    op_types: Sequence[str] = ()
    symmetric_activations: bool = False
    batch: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"calibration method '{self.method}' unknown (use {METHODS})")
        for t in (self.activation_type, self.weight_type):
            if t not in QTYPES:
                raise ConfigError(f"quantization type '{t}' unknown (use {QTYPES})")
        bad = set(self.keep_float) - {"first", "last"}
        if bad:
            raise ConfigError(f"keep_float accepts 'first' and 'last', not {sorted(bad)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keep_float"] = list(self.keep_float)
        d["exclude_nodes"] = list(self.exclude_nodes)
        d["op_types"] = list(self.op_types)
        return d


def load_onnx_checked(path: Path) -> Any:
    """Load and check an ONNX model; a truncated or foreign file is a ModelError, not a crash."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise ModelError(f"float model {path} does not exist") from None
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, ...
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise ModelError(f"{path}: the ONNX graph is empty")
    return model


def first_last_weighted_nodes(model: Any) -> tuple[str, str]:
    """Names of the first and last Conv/Gemm/MatMul nodes in graph order."""
    weighted = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if not weighted:
        raise ModelError("the model has no Conv/Gemm/MatMul node to quantize")
    return weighted[0], weighted[-1]


class _ArrayReader:
    """CalibrationDataReader over an in-memory array, in fixed-size batches, rangeable.

    ONNX Runtime keeps every intermediate output of one ``collect_data`` call in memory; the
    quantizer's ``CalibStridedMinMax`` calls it once per stride, which keeps memory flat.
    """

    def __init__(self, name: str, batches: list[np.ndarray], progress: Any) -> None:
        self.name, self.progress = name, progress
        self.batches = [np.ascontiguousarray(b, np.float32) for b in batches]
        self.start, self.end = 0, len(self.batches)
        self.pos = 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.batches))
        self.pos = self.start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= self.end:
            return None
        b = self.batches[self.pos]
        self.pos += 1
        self.progress.update(len(b))
        return {self.name: b}

    def rewind(self) -> None:
        self.pos = self.start


def quantize_onnx_int8(
    src: Path,
    dst: Path,
    calib_inputs: np.ndarray | list[np.ndarray],
    options: OnnxInt8Options | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Write an INT8 QDQ model of ``src`` to ``dst``; returns the parameters used.

    ``src`` should have a dynamic batch dimension (``mobilefacenet-dyn``) so that
    calibration runs in batches; ``calib_inputs`` are already-preprocessed float inputs.
    """
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # the quantizer's per-initializer warnings are noise
    opts = options or OnnxInt8Options()
    opts.validate()
    model = load_onnx_checked(Path(src))
    if opts.method == "dynamic":
        return _quantize_dynamic(src, dst, opts)
    if len(calib_inputs) == 0:
        raise ConfigError("the calibration set is empty")
    input_name = model.graph.input[0].name
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = opts.batch if batch_dim.dim_param or not batch_dim.dim_value else batch_dim.dim_value
    if isinstance(calib_inputs, list):
        # ready-made batches of differing shapes (P-Net pyramid levels): MinMax only, since
        # histogram collectors need same-shaped outputs
        if opts.method != "minmax" and len({b.shape for b in calib_inputs}) > 1:
            raise ConfigError("inputs of differing shapes can only be calibrated with minmax")
        return _quantize(src, dst, calib_inputs, opts, model, input_name, progress)
    # histogram collectors stack per-batch outputs, so every batch must have the same size
    usable = (len(calib_inputs) // batch) * batch or len(calib_inputs)
    batch = min(batch, usable)
    calib_inputs = np.asarray(calib_inputs[:usable], np.float32)
    batches = [calib_inputs[i : i + batch] for i in range(0, usable, batch)]
    return _quantize(src, dst, batches, opts, model, input_name, progress)


def _quantize(
    src: Path,
    dst: Path,
    batches: list[np.ndarray],
    opts: OnnxInt8Options,
    model: Any,
    input_name: str,
    progress: bool,
) -> dict[str, Any]:
    from edgeface_tools.quantize.calibration import _progress
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    exclude = list(opts.exclude_nodes)
    first, last = first_last_weighted_nodes(model)
    if "first" in opts.keep_float:
        exclude.append(first)
    if "last" in opts.keep_float:
        exclude.append(last)
    qtype = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[opts.method]
    n_batches = len(batches)
    stride = max(d for d in range(1, min(n_batches, 8) + 1) if n_batches % d == 0)
    extra: dict[str, Any] = {
        "CalibStridedMinMax": stride,
        "CalibTensorRangeSymmetric": opts.symmetric_activations,
        **opts.extra,
    }
    if opts.method == "percentile":
        extra["CalibPercentile"] = opts.percentile
    total = sum(len(b) for b in batches)
    bar = _progress(total=total, desc=f"calibrating ({opts.method})", enabled=progress)
    reader = _ArrayReader(input_name, batches, bar)
    with tempfile.TemporaryDirectory(prefix="edgeface-q.") as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        try:
            quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        except Exception:
            prepped = Path(src)  # pre-processing is an optimisation, not a requirement
        try:
            quantize_static(
                str(prepped),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=opts.per_channel,
                reduce_range=opts.reduce_range,
                activation_type=qtype[opts.activation_type],
                weight_type=qtype[opts.weight_type],
                calibrate_method=method,
                nodes_to_exclude=exclude,
                op_types_to_quantize=list(opts.op_types) or None,
                extra_options=extra,
            )
        finally:
            bar.close()
    _drop_unused_initializers(dst)
    params = opts.to_dict()
    params.update(excluded_nodes=exclude, calibration_inputs=total, format="QDQ")
    return params


def _quantize_dynamic(src: Path, dst: Path, opts: OnnxInt8Options) -> dict[str, Any]:
    """int8 weights of ``opts.op_types`` (default MatMul), activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    qtype = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=list(opts.op_types) or ["MatMul"],
        per_channel=opts.per_channel,
        reduce_range=opts.reduce_range,
        weight_type=qtype[opts.weight_type],
        nodes_to_exclude=list(opts.exclude_nodes),
        extra_options=dict(opts.extra),
    )
    _drop_unused_initializers(dst)
    params = opts.to_dict()
    params.update(excluded_nodes=list(opts.exclude_nodes), calibration_inputs=0, format="dynamic")
    return params


def _drop_unused_initializers(path: Path) -> None:
    """Remove constants no node reads (left by the quantizer's folding).

    ONNX Runtime would otherwise log one warning per orphan every time a device loads the
    model, and they are dead bytes in the file.
    """
    import onnx

    model = onnx.load(str(path))
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        onnx.save(model, str(path))
