"""``edgeface quantize build | report`` (offline, needs the ``tools`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeface.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="build INT8 / FP16 models and the float-vs-INT8 report")
    qsub = p.add_subparsers(dest="quantize_command", metavar="ACTION")
    qsub.required = True

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

    r = qsub.add_parser("report", help="size, speed, LFW accuracy, cosine and MTCNN agreement")
    r.add_argument("--artifacts", required=True, type=Path, help="directory made by build")
    r.add_argument("--out", required=True, type=Path, help="where JSON / Markdown / PNG go")
    r.add_argument("--data", type=Path, help="data folder with lfw/ and detection/")
    r.add_argument("--cache-dir", type=Path, help="cache for the aligned LFW crops")
    r.add_argument("--no-embedder", action="store_true")
    r.add_argument("--no-detector", action="store_true")
    r.add_argument("--detector-images", type=int, default=60, help="images per detection set")
    r.add_argument("--runs", type=int, default=50, help="timed batch-1 runs per variant")
    r.add_argument("--threads", type=int, default=2)
    r.set_defaults(func=_report)

    # `edgeface bench` runs on the device itself (no tools extra: only the runtimes)
    bn = sub.add_parser("bench", help="time every embedder variant of an artifacts dir here")
    bn.add_argument("--artifacts", required=True, type=Path, help="directory made by build")
    bn.add_argument("--report", type=Path, help="quantization_report.json: the accuracy budget")
    bn.add_argument("--runs", type=int, default=100)
    bn.add_argument("--threads", type=int, default=2)
    bn.add_argument("--json", action="store_true", help="print the timings and the pick as JSON")
    bn.add_argument("--out", type=Path, metavar="JSON", help="also write that JSON here")
    bn.set_defaults(func=_bench)


def _quiet_onnxruntime() -> None:
    """ORT logs one warning per constant its optimizer folds away in QDQ models: noise."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    ort.set_default_logger_severity(3)


def _tools() -> None:
    _quiet_onnxruntime()
    try:
        import edgeface_tools.quantize  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"edgeface quantize needs the tools extra ({exc.name} missing): "
            "pip install 'edgeface[tools]'"
        ) from exc


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
    _tools()
    from edgeface_tools.quantize.artifacts import ArtifactDir
    from edgeface_tools.quantize.build import (
        EMBEDDERS,
        BuildOptions,
        build_embedder,
        build_mtcnn,
        check_what,
    )
    from edgeface_tools.quantize.calibration import build_calibration_set
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

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
    also = _parse_also(args.also)
    if args.faces < 1:
        raise ConfigError("--faces must be positive")
    out = ArtifactDir(args.out)  # unwritable output fails here, before any slow work
    built: list[str] = []
    if embedders:
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
            float_model=args.float_model,  # type: ignore[arg-type]
        )
        for name in embedders:
            built += build_embedder(out, calib, opts, model=name, progress=not args.no_progress)
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


def _report(args: argparse.Namespace) -> int:
    _tools()
    from edgeface_tools.quantize.report import markdown, run_report

    from edgeface.evaluation.datasets import find_data_root

    result, written = run_report(
        args.artifacts,
        args.out,
        data_root=find_data_root(args.data),
        cache_dir=args.cache_dir,
        embedder=not args.no_embedder,
        detector=not args.no_detector,
        detector_images=args.detector_images,
        runs=args.runs,
        threads=args.threads,
    )
    print(markdown(result))
    for p in written:
        print(f"wrote {p}")
    return 0


def bench_embedders(
    art_dir: Path, *, runs: int, threads: int, budget: dict[str, bool] | None = None
) -> dict[str, object]:
    """ms per face at batch 1 of every MobileFaceNet artifact that this device can run.

    Content does not change the time of a CNN, so a fixed pseudo-random crop is used: the
    device needs no face photos. ``budget`` (file -> meets the accuracy goals, from the
    report) restricts the pick to variants whose accuracy was proven on LFW.
    """
    import json
    import time

    import numpy as np

    from edgeface.backends import backend_for_format, open_session
    from edgeface.embedder import Embedder
    from edgeface.errors import EdgefaceError
    from edgeface.modelstore import resolve_model
    from edgeface.modelstore.manifest import get_entry

    try:
        manifest = json.loads((art_dir / "artifacts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{art_dir}: no readable artifacts.json ({exc})") from exc
    prep = get_entry("mobilefacenet-dyn").preprocessing
    variants = [("float onnx", resolve_model("mobilefacenet-dyn"), "onnxruntime", "fp32")]
    for a in manifest.get("artifacts", []):
        if a.get("model") == "mobilefacenet":
            backend = backend_for_format(a["format"])
            variants.append((a["file"], art_dir / a["file"], backend, a["precision"]))
    crop = np.random.default_rng(0).integers(0, 255, (1, 112, 112, 3), dtype=np.uint8)
    rows: list[dict[str, object]] = []
    for name, path, backend, precision in variants:
        try:
            session = open_session(path, backend, threads=threads)
        except EdgefaceError as exc:  # e.g. no LiteRT on this device
            rows.append({"variant": name, "backend": backend, "error": str(exc)})
            continue
        emb = Embedder(session, preprocessing=prep, model_id="mobilefacenet", model_sha256="")
        for _ in range(5):
            emb.embed(crop)
        t0 = time.perf_counter()
        for _ in range(runs):
            emb.embed(crop)
        ms = (time.perf_counter() - t0) * 1000 / runs
        ok = True if precision == "fp32" or budget is None else budget.get(path.name, False)
        rows.append(
            {
                "variant": name,
                "path": str(path),
                "backend": backend,
                "precision": precision,
                "ms_per_face_b1": round(ms, 3),
                "within_budget": ok,
            }
        )
    timed = [r for r in rows if "ms_per_face_b1" in r]
    eligible = [r for r in timed if r["within_budget"]]
    pick = min(eligible, key=lambda r: r["ms_per_face_b1"]) if eligible else None  # type: ignore[arg-type,return-value]
    return {"threads": threads, "runs": runs, "variants": rows, "fastest_within_budget": pick}


def _bench(args: argparse.Namespace) -> int:
    import json

    _quiet_onnxruntime()
    budget = None
    if args.report:
        try:
            rep = json.loads(args.report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.report}: unreadable report ({exc})") from exc
        budget = {r["file"]: bool(r.get("meets_goals")) for r in rep.get("embedder", [])}
    result = bench_embedders(args.artifacts, runs=args.runs, threads=args.threads, budget=budget)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'variant':<36} {'backend':<12} {'ms/face':>8}  budget")
    for r in result["variants"]:  # type: ignore[union-attr]
        if "error" in r:
            print(f"{r['variant']:<36} {r['backend']:<12} {'-':>8}  {r['error']}")
        else:
            ok = "ok" if r["within_budget"] else "over"
            print(f"{r['variant']:<36} {r['backend']:<12} {r['ms_per_face_b1']:>8.2f}  {ok}")
    pick = result["fastest_within_budget"]
    if pick:
        print(f"fastest within the accuracy budget: {pick['variant']} ({pick['backend']})")  # type: ignore[index]
    return 0
