"""``edgeface quantize build | report`` (offline, needs the ``tools`` extra).

``report`` is :mod:`edgeface.cli.quantize_report_cmd`; ``edgeface bench``, which times the
built models on the device, :mod:`edgeface.cli.bench_cmd`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeface.cli import bench_cmd
from edgeface.cli.quantize_report_cmd import register_report
from edgeface.cli.tools_extra import require_tools
from edgeface.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="build INT8 / FP16 models and the float-vs-INT8 report")
    qsub = p.add_subparsers(dest="quantize_command", metavar="ACTION")
    qsub.required = True
    _register_build(qsub)
    register_report(qsub)
    bench_cmd.register(sub)  # `edgeface bench` times what quantize built


def _register_build(qsub: argparse._SubParsersAction) -> None:
    b = qsub.add_parser("build", help="quantize / convert the float models into --out")
    b.add_argument("--out", required=True, type=Path, help="output directory for the artifacts")
    b.add_argument(
        "--calib-dir",
        type=Path,
        help="directory of photos; our detector + aligner turn them into calibration faces "
        "(needed for the embedders; also MTCNN's unless --mtcnn-calib-dir is given)",
    )
    b.add_argument("--faces", type=int, default=500, help="calibration faces (default 500)")
    b.add_argument("--min-faces", type=int, default=50)
    b.add_argument(
        "--what",
        default="mobilefacenet,mtcnn",
        help="comma list of mobilefacenet, edgeface-xs, edgeface-xxs, mtcnn, liveness "
        "(default mobilefacenet,mtcnn)",
    )
    b.add_argument(
        "--liveness-data",
        type=Path,
        help="folder of <set>/{live,spoof} photos for liveness INT8 ranges "
        "(default: the data folder's spoof/)",
    )
    b.add_argument("--liveness-faces", type=int, default=256)
    b.add_argument("--method", default="percentile", choices=("minmax", "entropy", "percentile"))
    b.add_argument("--percentile", type=float, default=99.999)
    b.add_argument("--activation-type", default="quint8", choices=("quint8", "qint8"))
    b.add_argument("--weight-type", default="qint8", choices=("qint8", "quint8"))
    b.add_argument(
        "--keep-float", default="", help="comma list of first,last: layers left in float"
    )
    b.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel")
    b.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME:METHOD[:ACT[:KEEP]]",
        help="extra INT8 ONNX variant, e.g. minmax:minmax or s8:percentile:qint8 or "
        "pf:percentile:quint8:first+last (repeatable)",
    )
    b.add_argument("--no-tflite", action="store_true", help="skip the TFLite conversions")
    b.add_argument("--tflite-io", default="int8", choices=("int8", "uint8", "float32"))
    b.add_argument("--mtcnn-calib-dir", type=Path, help="photos for MTCNN calibration")
    b.add_argument("--mtcnn-images", type=int, default=40)
    b.add_argument(
        "--mtcnn-int8-heads",
        action="store_true",
        help="quantize the MTCNN score/box/landmark heads too (default: they stay float, "
        "which keeps the face scores distinct; see docs/quantization.md)",
    )
    b.add_argument("--float-model", type=Path, help="float ONNX (default: mobilefacenet-dyn)")
    b.add_argument("--cache-dir", type=Path, help="calibration cache (default: user cache)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    b.set_defaults(func=_build)


def _parse_also(specs: list[str]) -> dict[str, object]:
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

    out: dict[str, object] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) < 2 or not parts[0].replace("_", "").isalnum():
            raise ConfigError(f"--also '{spec}': expected NAME:METHOD[:ACT[:KEEP]]")
        keep = tuple(k for k in (parts[3].split("+") if len(parts) > 3 else []) if k)
        opts = OnnxInt8Options(
            method=parts[1],
            activation_type=parts[2] if len(parts) > 2 else "quint8",
            keep_float=keep,
        )
        opts.validate()
        out[parts[0]] = opts
    return out


def _build(args: argparse.Namespace) -> int:
    require_tools()
    from edgeface_tools.quantize.artifacts import ArtifactDir
    from edgeface_tools.quantize.build import build_mtcnn

    what, embedders, mtcnn_calib = _what(args)
    onnx_opts = _onnx_options(args)
    also = _parse_also(args.also)
    if args.faces < 1:
        raise ConfigError("--faces must be positive")
    out = ArtifactDir(args.out)  # unwritable output fails here, before any slow work
    built: list[str] = []
    if embedders:
        built += _build_embedders(args, out, embedders, onnx_opts, also)
    if "mtcnn" in what:
        built += build_mtcnn(
            out,
            mtcnn_calib,
            images=args.mtcnn_images,
            tflite=not args.no_tflite,
            float_heads=not args.mtcnn_int8_heads,
            progress=not args.no_progress,
        )
    if "liveness" in what:
        from edgeface_tools.quantize.build import build_liveness

        from edgeface.evaluation.datasets import find_data_root

        data = args.liveness_data or find_data_root(None) / "spoof"
        built += build_liveness(
            out, data, faces=args.liveness_faces, tflite=not args.no_tflite,
            progress=not args.no_progress,
        )  # fmt: skip
    for name in built:
        rec = out.records[name]
        print(f"{name:<32} {rec.size:>9} B  sha256 {rec.sha256[:16]}")
    print(f"manifest: {out.root / 'artifacts.json'}")
    return 0


def _what(args: argparse.Namespace) -> tuple[list[str], list[str], Path | None]:
    """The models to build, the embedders among them and MTCNN's calibration photos."""
    from edgeface_tools.quantize.build import EMBEDDERS, check_what

    what = check_what([w.strip() for w in args.what.split(",") if w.strip()])
    mtcnn_calib = args.mtcnn_calib_dir or args.calib_dir
    embedders = [w for w in what if w in EMBEDDERS]
    if embedders and args.calib_dir is None:
        raise ConfigError(
            f"--calib-dir is needed to quantize {', '.join(embedders)} (photos with faces)"
        )
    if len(embedders) > 1 and args.float_model:
        raise ConfigError("--float-model applies to one embedder; give one in --what")
    if "mtcnn" in what and mtcnn_calib is None:
        raise ConfigError("--mtcnn-calib-dir or --calib-dir is needed to quantize mtcnn")
    return what, embedders, mtcnn_calib


def _onnx_options(args: argparse.Namespace) -> Any:
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

    keep = tuple(k.strip() for k in args.keep_float.split(",") if k.strip())
    onnx_opts = OnnxInt8Options(
        method=args.method,
        percentile=args.percentile,
        activation_type=args.activation_type,
        weight_type=args.weight_type,
        per_channel=not args.per_tensor,
        keep_float=keep,
    )
    onnx_opts.validate()
    return onnx_opts


def _build_embedders(
    args: argparse.Namespace,
    out: Any,
    embedders: list[str],
    onnx_opts: Any,
    also: dict[str, object],
) -> list[str]:
    from edgeface_tools.quantize.build import EMBEDDERS, BuildOptions, build_embedder
    from edgeface_tools.quantize.calibration import build_calibration_set
    from edgeface_tools.quantize.onnx_int8 import load_onnx_checked

    from edgeface.modelstore import resolve_model

    # a corrupt float model fails now, not after minutes of calibration
    for name in embedders:
        load_onnx_checked(args.float_model or resolve_model(EMBEDDERS[name]))
    calib = build_calibration_set(
        args.calib_dir,
        count=args.faces,
        min_faces=min(args.min_faces, args.faces),
        seed=args.seed,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    print(f"calibration: {len(calib)} aligned faces from {args.calib_dir}")
    opts = BuildOptions(
        onnx=onnx_opts,
        tflite=not args.no_tflite,
        tflite_io=args.tflite_io,
        onnx_variants=also,
        float_model=args.float_model,
    )
    built: list[str] = []
    for name in embedders:
        built += build_embedder(out, calib, opts, model=name, progress=not args.no_progress)
    return built
