"""``edgeface eval liveness``: APCER / BPCER per set, float vs INT8, DET plot, calibration."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ConfigError


def register_liveness(actions: argparse._SubParsersAction) -> None:
    from edgeface.cli.eval_options import add_common_options

    p = actions.add_parser(
        "liveness",
        help="presentation-attack detection: APCER / BPCER / ACER per set (ISO/IEC 30107-3)",
        description="Detect the largest face of every image of DATA/spoof/<set>/{live,spoof} "
        "with our MTCNN, score it with the MiniFASNet pair and report, per set, APCER, BPCER "
        "and ACER at the calibrated thresholds, the APCER at BPCER 1 %% and 5 %%, faces not "
        "found and ms per face.",
    )
    add_common_options(p)
    p.add_argument("--sets", default=",".join(_sets()), help="comma list of sets under spoof/")
    p.add_argument(
        "--model",
        action="append",
        metavar="[LABEL=]V2,V1SE",
        help="a model pair to score: 'float' (the manifest's, default) or two files (INT8 "
        "ONNX or TFLite) for the 2.7x and 4.0x nets; repeatable, one table row each",
    )
    p.add_argument("--min-face", type=float, default=40.0, help="detector minimum face, px")
    p.add_argument("--plot", metavar="PNG", help="write the DET curves (APCER vs BPCER) here")
    p.add_argument("--cache", metavar="JSON", help="reuse / store the detected face boxes here")
    p.add_argument(
        "--write-calibration",
        nargs="?",
        const="",
        metavar="DIR",
        help="write liveness-<LABEL>.json for each --model (thresholds for BPCER 1/2/5/10 %% "
        "on the live faces of all sets) into DIR, e.g. the folder of the quantized pair, "
        "where the door looks for it; without DIR into the package's models/calibration",
    )
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    p.set_defaults(func=run_liveness)


def _sets() -> tuple[str, ...]:
    from edgeface.evaluation.liveness import LIVENESS_SETS

    return LIVENESS_SETS


def parse_models(specs: list[str] | None) -> list[tuple[str, tuple[str, ...] | None]]:
    """``[(label, paths or None for the manifest's float pair)]``."""
    out: list[tuple[str, tuple[str, ...] | None]] = []
    for spec in specs or ["float"]:
        label, sep, rest = spec.partition("=")
        if not sep:
            label, rest = "", spec
        if rest == "float":
            out.append((label or "fp32", None))
            continue
        paths = tuple(p.strip() for p in rest.split(",") if p.strip())
        if len(paths) != 2:
            raise ConfigError(f"--model {spec!r}: give 'float' or two files V2,V1SE")
        for p in paths:
            if not Path(p).is_file():
                raise ConfigError(f"--model: {p}: no such file")
        out.append((label or Path(paths[0]).stem.replace("minifasnet-v2-", ""), paths))
    return out


def _checker(paths: tuple[str, ...] | None, threads: int) -> Any:
    from edgeface.liveness import LivenessChecker, LivenessConfig

    # threshold 0.5 only to build without a calibration: thresholds are measured below
    cfg = LivenessConfig(paths=paths, threshold=0.5, session_options={"threads": threads})
    return LivenessChecker.from_config(cfg)


def _faces(args: argparse.Namespace, sets: list[str], root: Path) -> dict[str, Any]:
    from edgeface.cli.eval_options import progress
    from edgeface.detector import DetectorConfig, MTCNNDetector
    from edgeface.evaluation.liveness import FaceSet, collect_faces, cut_patches

    scales = (2.7, 4.0)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        meta = json.loads(cache.read_text(encoding="utf-8"))
        if meta.get("min_face") == args.min_face and set(sets) <= set(meta["sets"]):
            return {s: cut_patches(root / s, FaceSet(s, **meta["sets"][s]), scales) for s in sets}
    det = MTCNNDetector(DetectorConfig(min_face_size=args.min_face))

    def wrap(items: Any, desc: str, total: int) -> Any:
        return progress(items, args, desc, total)

    faces = {s: collect_faces(root / s, s, det.detect, scales, wrap=wrap) for s in sets}
    if cache is not None:
        from edgeface.cli.eval_options import write_json

        write_json(cache, {"min_face": args.min_face, "sets": {s: {
            "labels": f.labels, "files": f.files, "no_face": f.no_face, "images": f.images,
            "boxes": f.boxes} for s, f in faces.items()}})  # fmt: skip
    return faces


def run_liveness(args: argparse.Namespace) -> int:
    from edgeface.cli.eval_options import write_json
    from edgeface.evaluation.datasets import find_data_root
    from edgeface.evaluation.liveness import (
        SPOOF_DIR,
        argmax_rates,
        ms_per_face,
        plot_det,
        set_metrics,
        summed_probabilities,
    )
    from edgeface.liveness.calibration import (
        TARGETS,
        find_calibration,
        packaged_calibrations,
        threshold_for_bpcer,
    )

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    models = parse_models(args.model)
    root = find_data_root(args.data) / SPOOF_DIR
    if not root.is_dir():
        raise ConfigError(f"{root}: no liveness data folder (expected spoof/<set>/live, spoof)")
    t0 = time.perf_counter()
    faces = _faces(args, sets, root)
    report: dict[str, Any] = {"data": str(root), "detector_min_face": args.min_face,
                              "variants": {}}  # fmt: skip
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, paths in models:
        checker = _checker(paths, args.threads)
        summed = {s: summed_probabilities(checker, f) for s, f in faces.items()}
        scores = {s: v[:, 1] / len(checker.nets) for s, v in summed.items()}
        live_all = np.concatenate([scores[s][faces[s].is_live] for s in sets])
        if args.write_calibration is not None:
            cal = make_calibration(label, checker.model_sha256, faces, scores, live_all)
            dest = Path(args.write_calibration) if args.write_calibration else None
            if dest is None and packaged_calibrations():
                dest = Path(packaged_calibrations()[0]).parent
            dest = dest or Path(__file__).resolve().parents[2] / "models" / "calibration"
            dest.mkdir(parents=True, exist_ok=True)
            cal.save(dest / f"liveness-{label}.json")
            print(f"wrote {dest / f'liveness-{label}.json'}")
        beside = [Path(p).parent for p in paths or ()]
        try:
            thresholds = dict(find_calibration(checker.model_sha256, beside=beside).thresholds)
        except ConfigError:
            thresholds = {f"{t:g}": threshold_for_bpcer(live_all, t) for t in TARGETS}
        variant: dict[str, Any] = {"models": paths or "manifest float pair",
                                   "model_sha256": checker.model_sha256, "sets": {}}  # fmt: skip
        for s, f in faces.items():
            live, spoof = scores[s][f.is_live], scores[s][~f.is_live]
            m = set_metrics(live, spoof, thresholds)
            m["no_face"] = f.no_face
            m["images"] = f.images
            m["ms_per_face"] = round(ms_per_face(checker, f), 3)
            # upstream's own rule: argmax of the summed softmaxes == live
            m["argmax_rule"] = argmax_rates(summed[s], f.is_live)
            variant["sets"][s] = m
            curves[f"{label} {s}"] = (live, spoof)
        report["variants"][label] = variant
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print_table(report)
    if args.out:
        write_json(args.out, report)
    if args.plot:
        plot_det(curves, Path(args.plot))
    return 0


def make_calibration(label: str, shas: list[str], faces: dict[str, Any],
                     scores: dict[str, np.ndarray], live_all: np.ndarray) -> Any:  # fmt: skip
    from edgeface.liveness.calibration import (
        TARGETS,
        LivenessCalibration,
        bpcer_apcer,
        threshold_for_bpcer,
    )

    thresholds = {f"{t:g}": round(threshold_for_bpcer(live_all, t), 6) for t in TARGETS}
    per_set = {}
    for s, f in faces.items():
        live, spoof = scores[s][f.is_live], scores[s][~f.is_live]
        per_set[s] = {}
        for key, thr in thresholds.items():
            bpcer, apcer = bpcer_apcer(live, spoof, thr)
            per_set[s][key] = {"bpcer": round(bpcer, 5), "apcer": round(apcer, 5)}
    source = {
        "dataset": "shared/data/spoof development halves, live faces of all sets pooled",
        "detector": "edgeface MTCNN, largest face, squared box",
        "live_faces": int(live_all.size),
        "at_thresholds": per_set,
    }
    return LivenessCalibration(f"minifasnet-{label}", list(shas), thresholds, source)


def _pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.1f}"


def print_table(report: dict[str, Any]) -> None:
    print(f"{'variant':<8} {'set':<20} {'target':>6} {'thr':>7} {'BPCER%':>7} {'APCER%':>7} "
          f"{'ACER%':>6} {'APCER@1%':>8} {'APCER@5%':>8} {'noface':>7} {'ms':>6}")  # fmt: skip
    for label, v in report["variants"].items():
        for s, m in v["sets"].items():
            at = m["apcer_at_bpcer"]
            for key, row in m["at_calibrated"].items():
                nf = f"{m['no_face']['live']}/{m['no_face']['spoof']}"
                print(
                    f"{label:<8} {s:<20} {key:>6} {row['threshold']:>7.4f} {_pct(row['bpcer']):>7} "
                    f"{_pct(row['apcer']):>7} {_pct(row['acer']):>6} "
                    f"{_pct(at.get('0.01', {}).get('apcer', float('nan'))):>8} "
                    f"{_pct(at.get('0.05', {}).get('apcer', float('nan'))):>8} {nf:>7} "
                    f"{m['ms_per_face']:>6.2f}"
                )
            am = m["argmax_rule"]
            print(f"{label:<8} {s:<20} {'argmax':>6} {'-':>7} {_pct(am['bpcer']):>7} "
                  f"{_pct(am['apcer']):>7}   (upstream's rule)")  # fmt: skip
