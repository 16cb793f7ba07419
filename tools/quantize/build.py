"""``edgeface quantize build``: every deployable variant of the float models, one directory.

Embedders (MobileFaceNet, EdgeFace-XS, EdgeFace-XXS): INT8 ONNX (QDQ), FP32 / FP16 / INT8
TFLite, INT8 calibrated on faces aligned by our own detector and aligner. MTCNN: float and
INT8 ONNX and TFLite for P-Net, R-Net and O-Net, INT8 calibrated on the very inputs the
float cascade feeds each network on real photos (pyramid levels, 24x24 and 48x48 crops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgeface_tools.quantize.artifacts import ArtifactDir
from edgeface_tools.quantize.calibration import (
    CalibrationSet,
    _progress,
    list_images,
    preprocess_faces,
)
from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options, load_onnx_checked, quantize_onnx_int8

from edgeface.errors import ConfigError, NoFaceError
from edgeface.modelstore import resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

Log = Callable[[str], None]
#: embedder group (``--what`` name, artifact file prefix) -> its float manifest entry
EMBEDDERS = {
    "mobilefacenet": "mobilefacenet-dyn",
    "edgeface-xs": "edgeface-xs",
    "edgeface-xxs": "edgeface-xxs",
}
#: EdgeFace: the checkpoint the TFLite conversion re-exports from (see ``_tflite_source``)
EDGEFACE_CHECKPOINTS = {"edgeface-xs": "edgeface-xs-q", "edgeface-xxs": "edgeface-xxs-q"}
#: EdgeFace INT8 ONNX: ONNX Runtime's dynamic quantization of the weight MatMuls (MLP fc1 /
#: fc2, attention qkv / proj, the head; int8 per-channel weights, activation ranges per call);
#: the attention's activation x activation MatMuls, the convolutions and LayerNorm stay float.
#: Measured on EdgeFace-XS (LFW dev acc, CFP-FP dev acc / TAR@1e-3; float 99.50, 93.03 / 80.80;
#: ms per face batch 1 vs INT8 MobileFaceNet; docs/embedders.md): dynamic 99.47, 92.83 / 80.06,
#: 1.38x; static QDQ without fc2 99.47, 92.83 / 79.89, 1.97x; static QDQ with fc2 99.53,
#: 91.89 / 75.83; ONNX Runtime's default static op set 81.00, 65.43 / 3.09.
EDGEFACE_INT8_METHOD = "dynamic"
EDGEFACE_INT8_OP_TYPES = ("MatMul",)
EDGEFACE_FLOAT_NODE_SUFFIXES = (".attn_logits", ".attn_v")
#: static (calibrated) EdgeFace variants (``--also``) also keep fc2, which reads GELU outputs
#: whose range one calibration cannot fit, in float
EDGEFACE_STATIC_FLOAT_SUFFIXES = (".fc2.matmul",)


def _int8_options(
    model: str, opts: OnnxInt8Options, float_model: Path, *, main: bool = True
) -> OnnxInt8Options:
    """The INT8 options of one embedder: the CLI's, plus EdgeFace's: its main INT8 file is
    dynamically quantized; ``--also`` variants keep their calibration method."""
    if model not in EDGEFACE_CHECKPOINTS or opts.op_types:
        return opts
    graph = load_onnx_checked(float_model).graph
    method = EDGEFACE_INT8_METHOD if main else opts.method
    suffixes = EDGEFACE_FLOAT_NODE_SUFFIXES
    if method != "dynamic":
        suffixes += EDGEFACE_STATIC_FLOAT_SUFFIXES
    kept = [n.name for n in graph.node if n.name.endswith(suffixes)]
    return dataclasses.replace(
        opts,
        method=method,
        op_types=EDGEFACE_INT8_OP_TYPES,
        exclude_nodes=[*opts.exclude_nodes, *kept],
    )


def _tflite_source(model: str, src: Path, work: Path) -> Path:
    """The ONNX that onnx2tf converts: the float model itself, except for EdgeFace, whose
    GELU is re-exported with a polynomial erf (TFLite has no Erf builtin; same outputs to
    ~3e-6, tests/test_edgeface_export.py)."""
    if model not in EDGEFACE_CHECKPOINTS:
        return src
    from edgeface_tools.edgenext_export import write_onnx

    out = work / f"{model}-polynomial-erf.onnx"
    write_onnx(resolve_model(EDGEFACE_CHECKPOINTS[model]), out, erf="polynomial")
    return out


MTCNN_PREPROCESSING = {
    "layout": "NHWC or NCHW (see input_layout)",
    "color": "RGB",
    "mean": 127.5,
    "scale": 0.0078125,
}


@dataclass
class BuildOptions:
    onnx: OnnxInt8Options = field(default_factory=OnnxInt8Options)
    tflite: bool = True
    tflite_io: str = "int8"
    #: extra ONNX INT8 variants to build besides the default (name suffix -> options)
    onnx_variants: dict[str, OnnxInt8Options] = field(default_factory=dict)
    float_model: Path | None = None


def build_embedder(
    out: ArtifactDir,
    calib: CalibrationSet,
    options: BuildOptions | None = None,
    *,
    model: str = "mobilefacenet",
    log: Log = print,
    progress: bool = True,
) -> list[str]:
    """Build the artifacts of embedder group ``model`` (see :data:`EMBEDDERS`); returns
    their manifest names."""
    opts = options or BuildOptions()
    if model not in EMBEDDERS:
        raise ConfigError(f"unknown embedder '{model}' (use {', '.join(EMBEDDERS)})")
    entry = get_entry(EMBEDDERS[model])
    src = Path(opts.float_model) if opts.float_model else resolve_model(entry.name)
    load_onnx_checked(src)  # a corrupt float model fails here, before minutes of calibration
    src_sha = sha256_file(src)
    prep = dict(entry.preprocessing)
    common = {
        "model": model,
        "source": src.name,
        "source_sha256": src_sha,
        "calibration": calib.description,
    }
    built: list[str] = []
    x_nchw = preprocess_faces(calib.faces, prep, "NCHW")
    variants = {"": opts.onnx, **{f"-{k}": v for k, v in opts.onnx_variants.items()}}
    for suffix, onnx_opts in variants.items():
        onnx_opts = _int8_options(model, onnx_opts, src, main=not suffix)
        name = f"{model}-int8{suffix}.onnx"
        log(f"{name}: INT8 ONNX ({onnx_opts.method}, {onnx_opts.activation_type} activations)")
        with out.staging(name) as tmp:
            params = quantize_onnx_int8(src, tmp, x_nchw, onnx_opts, progress=progress)
        out.record_file(
            name,
            name,
            format="onnx",
            precision="int8",
            input_layout="NCHW",
            preprocessing={**prep, "layout": "NCHW"},
            quantization=params,
            **common,
        )
        built.append(name)
    if not opts.tflite:
        return built
    from edgeface_tools.quantize.tflite import onnx_to_saved_model, saved_model_to_tflite

    x_nhwc = preprocess_faces(calib.faces, prep, "NHWC")
    with tempfile.TemporaryDirectory(prefix="edgeface-onnx2tf.") as work:
        log("onnx2tf: ONNX -> NHWC SavedModel")
        saved = onnx_to_saved_model(
            _tflite_source(model, src, Path(work)), Path(work) / "saved_model"
        )
        steps = ["fp32", "fp16", "int8"]
        bar = _progress(total=len(steps), desc="TFLite conversion", enabled=progress)
        try:
            for precision in steps:
                name = f"{model}-{precision}.tflite"
                log(f"{name}: TFLite {precision}")
                with out.staging(name) as tmp:
                    params = saved_model_to_tflite(
                        saved,
                        tmp,
                        precision=precision,
                        calib_nhwc=x_nhwc if precision == "int8" else None,
                        io_type=opts.tflite_io,
                    )
                out.record_file(
                    name,
                    name,
                    format="tflite",
                    precision=precision,
                    input_layout="NHWC",
                    preprocessing={**prep, "layout": "NHWC"},
                    quantization=params,
                    **{**common, "calibration": calib.description if precision == "int8" else {}},
                )
                built.append(name)
                bar.update(1)
        finally:
            bar.close()
    return built


# ------------------------------------------------------------------------------------ MTCNN


def record_cascade_inputs(
    images: Sequence[Path], *, max_crops: int = 1500, progress: bool = True
) -> dict[str, list[np.ndarray]]:
    """NHWC float inputs of P-Net (whole pyramid levels), R-Net and O-Net (crops) on real photos.

    Runs our float NumPy reference cascade, so INT8 ranges cover exactly what INT8 nets will
    see, including the many background windows P-Net and R-Net must learn to reject.
    """
    from edgeface.detector import MTCNNDetector
    from edgeface.errors import EdgefaceError
    from edgeface.imaging import load_image

    det = MTCNNDetector()
    store: dict[str, list[np.ndarray]] = {"pnet": [], "rnet": [], "onet": []}

    def keep(net: str, batch: np.ndarray) -> None:
        # every P-Net level; R-Net/O-Net crops until a sample of max_crops can be drawn
        if net == "pnet" or sum(len(b) for b in store[net]) < 4 * max_crops:
            store[net].append(np.array(batch, dtype=np.float32))

    bar = _progress(total=len(images), desc="MTCNN calibration images", enabled=progress)
    try:
        with det.recording(keep):  # all levels and crops, also the helpers' share
            for path in images:
                with contextlib.suppress(EdgefaceError):
                    det.detect(load_image(path))
                bar.update(1)
    finally:
        bar.close()
        det.close()
    rng = np.random.default_rng(0)
    for net in ("rnet", "onet"):
        if not store[net]:
            raise NoFaceError("the cascade produced no R-Net/O-Net crops on the calibration images")
        crops = np.concatenate(store[net])
        crops = crops[rng.permutation(len(crops))[:max_crops]]
        store[net] = [crops[i : i + 32] for i in range(0, len(crops), 32)]
    return store


def build_mtcnn(
    out: ArtifactDir,
    image_dir: Path,
    *,
    images: int = 40,
    tflite: bool = True,
    tflite_io: str = "float32",
    float_heads: bool = True,
    log: Log = print,
    progress: bool = True,
) -> list[str]:
    """Float + INT8 ONNX and TFLite of the three nets; returns their manifest names.

    ``float_heads`` (default) keeps each net's output heads in float inside the INT8 models
    (INT8 trunk, float score / box / landmark layers): a quantized softmax ties the scores
    that every NMS ranks by (see ``mtcnn_export.head_nodes`` and docs/quantization.md).
    """
    from edgeface_tools.quantize.mtcnn_export import (
        NETS,
        float_share,
        head_nodes,
        tflite_convert,
        write_onnx,
    )

    npz = resolve_model("mtcnn")
    src_sha = sha256_file(npz)
    files = list_images(Path(image_dir))
    if not files:
        raise NoFaceError(f"MTCNN calibration directory {image_dir} contains no image files")
    step = max(1, len(files) // images)
    chosen = files[::step][:images]
    log(f"MTCNN: recording cascade inputs on {len(chosen)} images from {image_dir}")
    calib = record_cascade_inputs(chosen, progress=progress)
    description = {
        "kind": "mtcnn-cascade-inputs",
        "directory": str(image_dir),
        "images": len(chosen),
        "pnet_levels": len(calib["pnet"]),
        "rnet_crops": int(sum(len(b) for b in calib["rnet"])),
        "onet_crops": int(sum(len(b) for b in calib["onet"])),
    }
    common = {"source": npz.name, "source_sha256": src_sha, "preprocessing": MTCNN_PREPROCESSING}
    built: list[str] = []
    for net in NETS:
        nchw = [b.transpose(0, 3, 1, 2).copy() for b in calib[net]]
        f32 = f"mtcnn-{net}-fp32.onnx"
        with out.staging(f32) as tmp:
            write_onnx(npz, net, tmp)
        out.record_file(
            f32,
            f32,
            model=f"mtcnn-{net}",
            format="onnx",
            precision="fp32",
            input_layout="NCHW",
            **common,
        )
        i8 = f"mtcnn-{net}-int8.onnx"
        model = load_onnx_checked(out.root / f32)
        heads = head_nodes(model) if float_heads else []
        log(f"{i8}: INT8 ONNX (minmax{', float heads' if heads else ''})")
        # 7-bit weights (reduce_range): on x86 without VNNI, ONNX Runtime's u8 x s8 kernels
        # add pairs of products in saturating int16. On such a CPU (AVX2 only) the INT8 cascade
        # found 88 % of the float cascade's faces with full-range weights, 100 % with 7-bit
        # ones (tests/test_quantize_mtcnn.py). What 7-bit weights cost on VNNI x86 or ARM was
        # not measured (no such machine in the session that made this change).
        opts = OnnxInt8Options(
            method="minmax", activation_type="quint8", exclude_nodes=heads, reduce_range=True
        )
        with out.staging(i8) as tmp:
            params = quantize_onnx_int8(out.root / f32, tmp, nchw, opts, progress=progress)
        params["float_share"] = float_share(model, heads)
        out.record_file(
            i8,
            i8,
            model=f"mtcnn-{net}",
            format="onnx",
            precision="int8",
            input_layout="NCHW",
            quantization=params,
            calibration=description,
            **common,
        )
        built += [f32, i8]
        if not tflite:
            continue
        names = {p: f"mtcnn-{net}-{p}.tflite" for p in ("fp32", "int8")}
        log(f"mtcnn-{net}: TFLite fp32 + int8 (onnx2tf)")
        with contextlib.ExitStack() as stack:
            tmps = {p: stack.enter_context(out.staging(n)) for p, n in names.items()}
            tparams = tflite_convert(
                out.root / f32,
                net,
                tmps,
                calib=calib[net],
                io_type=tflite_io,
                float_heads=float_heads,
            )
        for precision, name in names.items():
            out.record_file(
                name,
                name,
                model=f"mtcnn-{net}",
                format="tflite",
                precision=precision,
                input_layout="NHWC",
                quantization=tparams[precision],
                calibration=description if precision == "int8" else {},
                **common,
            )
            built.append(name)
    return built


def check_what(what: Sequence[str]) -> list[str]:
    known = [*EMBEDDERS, "mtcnn", "liveness"]
    bad = set(what) - set(known)
    if bad:
        raise ConfigError(f"unknown model group(s) {sorted(bad)} (use {', '.join(known)})")
    return list(what)


# --------------------------------------------------------------------------------- liveness

LIVENESS_MODELS = ("minifasnet-v2", "minifasnet-v1se")
#: ops of the INT8 TFLite pair that stay float. PRELU: see ``prelu_as_op``. SOFTMAX: an int8
#: softmax rounds the live probability to 1/256 and to 0 for some live faces, so the
#: threshold for BPCER 1 % fell to 0 (CelebA-Spoof slice APCER 100 % there; float softmax:
#: 83.7 %, float pair 84.4 %).
FLOAT_TFLITE_OPS = ("PRELU", "SOFTMAX")


def liveness_calibration_patches(
    data_dir: Path, *, faces: int = 256, progress: bool = True
) -> dict[float, np.ndarray]:
    """Context patches (RGB uint8) per crop scale of our MTCNN faces of ``data_dir/<set>``.

    Live and spoof faces both: INT8 ranges must cover what an attack looks like too.
    """
    from edgeface.detector import MTCNNDetector
    from edgeface.evaluation.liveness import collect_faces

    sets = sorted(p for p in Path(data_dir).iterdir() if (p / "live").is_dir())
    if not sets:
        raise NoFaceError(f"{data_dir}: no <set>/live folders to calibrate liveness on")
    det = MTCNNDetector()
    scales = (2.7, 4.0)
    per_label = max(1, faces // (2 * len(sets)))
    out: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    for root in sets:
        fs = collect_faces(root, root.name, det.detect, scales, per_label=per_label)
        for s in scales:
            out[s] += fs.patches[s]
    return {s: np.stack(v) for s, v in out.items()}


def build_liveness(
    out: ArtifactDir,
    data_dir: Path,
    *,
    faces: int = 256,
    tflite: bool = True,
    log: Log = print,
    progress: bool = True,
) -> list[str]:
    """INT8 ONNX (and FP16 / INT8 TFLite) of the MiniFASNet pair; returns their names.

    The float ONNX files are the manifest's (``edgeface models fetch`` builds them).
    """
    patches = liveness_calibration_patches(data_dir, faces=faces, progress=progress)
    description = {"kind": "liveness-context-patches", "directory": str(data_dir),
                   "faces": len(next(iter(patches.values())))}  # fmt: skip
    built: list[str] = []
    for model in LIVENESS_MODELS:
        entry = get_entry(model)
        src = resolve_model(model)
        prep = dict(entry.preprocessing)
        rgb = patches[float(prep["crop_scale"])]
        bgr = rgb[..., ::-1].astype(np.float32) * float(prep.get("scale", 1.0))
        common = {"model": model, "source": src.name, "source_sha256": sha256_file(src)}
        name = f"{model}-int8.onnx"
        # The last Gemm and the softmax stay float: three logits, cheap, and their rounding
        # would move the live probability the threshold is set on. The first conv stays
        # float too: it sees raw 0-255 BGR pixels. Ranges: the 99.99th percentile, the
        # variant closest to float (mean |live score - float| on the development faces,
        # CelebA-Spoof slice / NUAA, onnxruntime 1.32): 99.99th 0.014 / 0.005, 99.999th 0.019
        # / 0.006, 99.9th 0.016 / 0.011, minmax 0.020 / 0.005, entropy 0.021 / 0.006.
        opts = OnnxInt8Options(method="percentile", percentile=99.99, activation_type="quint8",
                               exclude_nodes=["logits", "prob"], keep_float=("first",))  # fmt: skip
        log(f"{name}: INT8 ONNX (99.99th percentile, float first conv and logits)")
        with out.staging(name) as tmp:
            params = quantize_onnx_int8(src, tmp, bgr.transpose(0, 3, 1, 2), opts,
                                        progress=progress)  # fmt: skip
        out.record_file(name, name, format="onnx", precision="int8", input_layout="NCHW",
                        preprocessing={**prep, "layout": "NCHW"}, quantization=params,
                        calibration=description, **common)  # fmt: skip
        built.append(name)
        if not tflite:
            continue
        import onnx
        from edgeface_tools.quantize.minifasnet_export import prelu_as_op
        from edgeface_tools.quantize.onnx_int8 import load_onnx_checked
        from edgeface_tools.quantize.tflite import onnx_to_saved_model, saved_model_to_tflite

        with tempfile.TemporaryDirectory(prefix="edgeface-onnx2tf.") as work:
            # the same function with PReLU as one op, kept float in INT8 so that no conv
            # inherits the range of a MAXIMUM (prelu_as_op says why)
            work_src = Path(work) / src.name
            onnx.save(prelu_as_op(load_onnx_checked(src)), str(work_src))
            saved = onnx_to_saved_model(work_src, Path(work) / "saved_model")
            for precision in ("fp16", "int8"):
                tname = f"{model}-{precision}.tflite"
                int8 = precision == "int8"
                log(f"{tname}: TFLite {precision}"
                    + (" (PReLU and softmax float, convs INT8)" if int8 else ""))  # fmt: skip
                with out.staging(tname) as tmp:
                    tparams = saved_model_to_tflite(
                        saved, tmp, precision=precision, io_type="float32",
                        calib_nhwc=bgr if int8 else None,
                        float_ops=FLOAT_TFLITE_OPS if int8 else (),
                    )  # fmt: skip
                tparams["graph"] = "PReLU as one PRelu op (prelu_as_op)"
                out.record_file(tname, tname, format="tflite", precision=precision,
                                input_layout="NHWC", preprocessing={**prep, "layout": "NHWC"},
                                quantization=tparams, calibration=description if int8 else {},
                                **common)  # fmt: skip
                built.append(tname)
    return built
