"""ONNX -> TFLite (NHWC) with onnx2tf, then float32 / float16 / full-integer INT8.

onnx2tf turns the NCHW ONNX graph into an NHWC TensorFlow SavedModel (transposes folded away,
which is what makes the TFLite graph fast on XNNPACK). We then run the TFLite converter
ourselves rather than onnx2tf's built-in INT8 mode, because that mode calibrates on sample
images it downloads, while we must calibrate on our own aligned faces and work offline.

Both steps run in a child process: TensorFlow holds on to ~1 GB and many threads, and an
operator's ``edgeface quantize build`` should not inherit that for the ONNX steps after it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError, ModelError

PRECISIONS = ("fp32", "fp16", "int8")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def onnx_to_saved_model(onnx_path: Path, out_dir: Path, *, timeout: float = 900) -> Path:
    """Run onnx2tf on ``onnx_path``; returns the SavedModel directory.

    The ONNX input should have a dynamic batch: with a fixed small batch onnx2tf validates its
    output on sample images fetched from the internet, which an offline build cannot do.
    """
    # onnx2tf rewrites its input file in place (with the onnxsim-simplified graph): give it a
    # private copy, so the source model (often ../shared/models or the model cache) keeps its
    # sha256. tests/test_quantize_* check the source is unchanged after a build.
    private = out_dir.parent / f"onnx2tf-input-{onnx_path.name}"
    private.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, private)
    cmd = [
        sys.executable,
        "-m",
        "onnx2tf",
        "-i",
        str(private),
        "-o",
        str(out_dir),
        "-osd",
        "-n",
    ]
    try:
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=_child_env(),
            cwd=str(out_dir.parent),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"onnx2tf did not finish within {timeout:.0f} s") from exc
    if res.returncode != 0 or not (out_dir / "saved_model.pb").is_file():
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise ModelError(f"onnx2tf failed on {onnx_path}: {' | '.join(tail) or 'no output'}")
    return out_dir


_CONVERT_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
args = json.loads(sys.argv[1])
conv = tf.lite.TFLiteConverter.from_saved_model(args["saved_model"])
if args["precision"] == "fp16":
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
elif args["precision"] == "int8":
    if args["calib"].endswith(".npz"):  # ready-made inputs of differing shapes
        with np.load(args["calib"]) as z:
            samples = [z[f"arr_{i}"] for i in range(len(z.files))]
        def rep():
            for x in samples:
                yield [np.asarray(x, dtype=np.float32)]
    else:
        data = np.load(args["calib"], mmap_mode="r")
        def rep():
            for i in range(len(data)):
                yield [np.asarray(data[i : i + 1], dtype=np.float32)]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if args["allow_float_fallback"]:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    conv.target_spec.supported_ops = ops
    io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[args["io_type"]]
    conv.inference_input_type = io
    conv.inference_output_type = io
    if args.get("per_tensor"):
        conv._experimental_disable_per_channel = True
if args["precision"] == "int8" and (args.get("float_tail_after") or args.get("float_ops")):
    # ops kept float: found by type in the float model (their output tensors have the same
    # names in the calibrated one), then calibrate and quantize all but those
    from ai_edge_litert.interpreter import Interpreter
    plain = tf.lite.TFLiteConverter.from_saved_model(args["saved_model"]).convert()
    it = Interpreter(model_content=plain)
    ops = it._get_ops_details()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    kinds = [o["op_name"] for o in ops]
    keep = set()
    if args.get("float_tail_after"):
        if args["float_tail_after"] not in kinds:
            sys.exit(f"no {args['float_tail_after']} op in the model: cannot find its float tail")
        last = len(kinds) - 1 - kinds[::-1].index(args["float_tail_after"])
        keep |= set(range(last + 1, len(ops)))
    for kind in args.get("float_ops") or []:
        if kind not in kinds:
            sys.exit(f"no {kind} op in the model to keep in float")
        keep |= {i for i, k in enumerate(kinds) if k == kind}
    denied = [names[i] for j in sorted(keep) for i in ops[j]["outputs"]]
    opts = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=denied, fully_quantize=False
    )
    dbg = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=rep, debug_options=opts
    )
    data = dbg.get_nondebug_quantized_model()
    with open(args["tail_json"], "w") as f:
        json.dump({"float_ops": [kinds[j] for j in sorted(keep)], "float_tensors": denied}, f)
else:
    data = conv.convert()
with open(args["out"], "wb") as f:
    f.write(data)
"""


def saved_model_to_tflite(
    saved_model: Path,
    out: Path,
    *,
    precision: str = "fp32",
    calib_nhwc: np.ndarray | list[np.ndarray] | None = None,
    io_type: str = "int8",
    allow_float_fallback: bool = False,
    per_tensor: bool = False,
    float_tail_after: str | None = None,
    float_ops: Sequence[str] = (),
    timeout: float = 1800,
) -> dict[str, Any]:
    """Convert a SavedModel to one TFLite file; returns the parameters for the manifest.

    ``precision="int8"`` is full-integer quantization: every op int8 (``allow_float_fallback``
    off), with int8, uint8 or float32 input/output (``io_type``) and ranges from
    ``calib_nhwc`` (preprocessed float NHWC inputs, the representative dataset: one array
    of samples, or a list of ready-made inputs, e.g. whole P-Net pyramid levels of differing
    sizes, which the converter's calibrator feeds one by one to a dynamic-shape model).

    ``float_tail_after`` (a TFLite op type, e.g. ``"PRELU"``): the ops after the last op of
    that type stay float (TF's quantization denylist; a DEQUANTIZE feeds them), so a small
    output head is computed in float from the INT8 trunk. Only with float32 I/O: the debugger
    that applies the denylist has no int8-output mode for a float tail.

    ``float_ops`` (TFLite op types, e.g. ``("PRELU",)``): every op of these types stays float
    between INT8 neighbours (a DEQUANTIZE before, a QUANTIZE after), through the same
    denylist and with the same float32-I/O condition.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"TFLite precision '{precision}' unknown (use {PRECISIONS})")
    if io_type not in ("int8", "uint8", "float32"):
        raise ConfigError(f"TFLite io type '{io_type}' unknown (use int8, uint8, float32)")
    params: dict[str, Any] = {"precision": precision}
    with tempfile.TemporaryDirectory(prefix="edgeface-tfl.") as tmp:
        args: dict[str, Any] = {
            "saved_model": str(saved_model),
            "precision": precision,
            "out": str(out),
            "io_type": io_type,
            "allow_float_fallback": allow_float_fallback,
            "per_tensor": per_tensor,
            "float_tail_after": float_tail_after,
            "float_ops": list(float_ops),
            "tail_json": str(Path(tmp) / "tail.json"),
        }
        if precision == "int8":
            if calib_nhwc is None or len(calib_nhwc) == 0:
                raise ConfigError("INT8 TFLite needs a non-empty representative dataset")
            if isinstance(calib_nhwc, list):
                calib_path = Path(tmp) / "calib.npz"
                np.savez(calib_path, *[np.asarray(x, np.float32) for x in calib_nhwc])
            else:
                calib_path = Path(tmp) / "calib.npy"
                np.save(calib_path, np.asarray(calib_nhwc, np.float32))
            args["calib"] = str(calib_path)
            params.update(
                io_type=io_type,
                allow_float_fallback=allow_float_fallback,
                per_channel=not per_tensor,
                representative_samples=len(calib_nhwc),
            )
            if float_tail_after or float_ops:
                if io_type != "float32":
                    raise ConfigError("ops kept float need float32 TFLite input/output")
                if float_tail_after:
                    params["float_tail_after"] = float_tail_after
        cmd = [sys.executable, "-c", _CONVERT_SCRIPT, json.dumps(args)]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, env=_child_env(), timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"TFLite conversion did not finish within {timeout:.0f} s") from exc
        if res.returncode != 0 or not out.is_file():
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise ModelError(f"TFLite conversion ({precision}) failed: {' | '.join(tail)}")
        tail_info = Path(args["tail_json"])
        if tail_info.is_file():
            params.update(json.loads(tail_info.read_text(encoding="utf-8")))
    return params
