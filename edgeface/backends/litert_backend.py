"""LiteRT (TensorFlow Lite) sessions: the runtime a Raspberry Pi ships with.

``ai-edge-litert`` is preferred; a device that only has the older ``tflite-runtime`` wheel
works the same way, because both expose the same ``Interpreter`` class. TFLite models made by
onnx2tf are NHWC, so ``info.input_layout`` says so and wrappers transpose for us.

Quantized models keep their integer inputs and outputs (they are smaller and a Pi's int8 path
avoids two float conversions), but the session hides that: ``run`` takes float32, quantizes
with the input tensor's scale and zero point, and dequantizes every output. Callers therefore
treat a float, FP16 and INT8 model identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeface.backends.base import SessionInfo
from edgeface.backends.registry import get_backend
from edgeface.errors import ModelError


def _interpreter_class() -> Any:
    """The Interpreter class of whichever LiteRT runtime is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise ImportError(
                "neither ai-edge-litert nor tflite-runtime is installed", name="ai_edge_litert"
            ) from exc
    return Interpreter


def _quant_params(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero_point) of an integer tensor, or None for a float tensor."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    zeros = np.asarray(qp.get("zero_points", []), dtype=np.int64)
    if scales.size >= 1:
        return float(scales[0]), int(zeros[0]) if zeros.size else 0
    scale, zero = detail.get("quantization", (0.0, 0))
    if not scale:
        raise ModelError(f"tensor '{detail.get('name')}' is integer but has no scale")
    return float(scale), int(zero)


class LiteRTSession:
    """One ``InferenceSession`` over a ``.tflite`` file.

    ``threads`` (the option name every backend takes) bounds the XNNPACK / kernel threads (2
    on a 2-core board keeps the camera thread responsive). Inputs with a different batch size
    or, for fully convolutional nets such as P-Net, a different height and width, resize the
    interpreter on the fly; resizing is skipped when the shape did not change, since
    reallocation costs more than a small model run.
    """

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        interpreter_cls = _interpreter_class()
        try:
            self._it = interpreter_cls(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: LiteRT cannot load this model ({exc})") from exc
        inputs = self._it.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input tensor, found {len(inputs)}")
        self._in = inputs[0]
        self._in_q = _quant_params(self._in)
        self._outputs = self._it.get_output_details()
        signature = self._in.get("shape_signature", self._in["shape"])
        shape = tuple(None if int(d) < 0 else int(d) for d in signature)
        self._current: tuple[int, ...] | None = tuple(int(d) for d in self._in["shape"])
        try:
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if all(d is not None for d in shape[1:]):
                raise ModelError(f"{path}: LiteRT cannot load this model ({exc})") from exc
            # a dynamic H x W net (P-Net) has a 1x1 placeholder shape that its convs cannot
            # take; it is allocated at the first real input instead
            self._current = None
        self.info = SessionInfo(
            input_shape=shape,
            input_layout=get_backend("litert").layout,
            backend="litert",
            path=path,
        )
        self._order = self._output_order(path)

    def _output_order(self, path: Path) -> list[int]:
        """Output positions in the order of the model's signature, if it declares one.

        The converter may list outputs in any order in ``get_output_details``; the signature
        (names sorted by the converter as ``output_0``, ``output_1``, ... or the ONNX names)
        keeps the order the source model declared, which is what wrappers rely on.
        """
        try:
            runners = self._it.get_signature_list()
            if len(runners) != 1:
                return list(range(len(self._outputs)))
            runner = self._it.get_signature_runner(next(iter(runners)))
            # output name -> tensor index, through the public SignatureRunner
            sig = {name: d["index"] for name, d in runner.get_output_details().items()}
        except (AttributeError, ValueError, RuntimeError):
            return list(range(len(self._outputs)))
        index_to_pos = {d["index"]: i for i, d in enumerate(self._outputs)}
        names = list(sig)
        if all(n.startswith("output_") and n[7:].isdigit() for n in names):
            names.sort(key=lambda n: int(n[7:]))
        order = [index_to_pos[sig[n]] for n in names if sig[n] in index_to_pos]
        return order if len(order) == len(self._outputs) else list(range(len(self._outputs)))

    def _resize(self, shape: tuple[int, ...]) -> None:
        declared = self.info.input_shape
        if len(shape) != len(declared) or any(
            d is not None and d != s for d, s in zip(declared[1:], shape[1:], strict=True)
        ):
            raise ModelError(
                f"{self.info.path}: input shape {shape} does not fit the model's {declared} (NHWC)"
            )
        try:
            self._it.resize_tensor_input(self._in["index"], list(shape), strict=False)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.info.path}: cannot resize input to {shape} ({exc})") from exc
        self._current = shape
        self._outputs = self._it.get_output_details()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape) != self._current:
            self._resize(tuple(int(d) for d in x.shape))
        if self._in_q is not None:
            scale, zero = self._in_q
            info = np.iinfo(np.dtype(self._in["dtype"]))
            q = np.clip(np.round(x / scale) + zero, info.min, info.max)
            feed = q.astype(self._in["dtype"])
        else:
            feed = np.ascontiguousarray(x, dtype=self._in["dtype"])
        self._it.set_tensor(self._in["index"], feed)
        self._it.invoke()
        results: list[np.ndarray] = []
        for pos in self._order:
            detail = self._outputs[pos]
            y = self._it.get_tensor(detail["index"])
            q = _quant_params(detail)
            if q is not None:
                y = (y.astype(np.float32) - q[1]) * np.float32(q[0])
            results.append(np.asarray(y, dtype=np.float32))
        return results
