"""``edgeface eval ACTION``: offline quality reports on the shared research data.

Actions are registered by small ``_register_<action>(actions)`` functions listed in
:data:`ACTIONS`; to add one (``eval lfw``, ``eval identify``), write its register function
(it must ``set_defaults(func=...)``) and append it to the list. Shared options (``--data``,
``--out``, ``--no-progress``) come from :mod:`edgeface.cli.eval_options` so every action
spells them the same way; the action modules import that module, never this one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TypeVar

from edgeface.cli.eval_options import add_common_options, progress, write_json
from edgeface.errors import ConfigError

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure detection / recognition quality on research data")
    actions = p.add_subparsers(dest="eval_action", metavar="ACTION")
    actions.required = True
    for register_action in ACTIONS:
        register_action(actions)


# ----------------------------------------------------------------------------- eval detect


def _parse_iou(values: list[str] | None) -> dict[str, float]:
    from edgeface.evaluation.datasets import BOXED_SETS

    out: dict[str, float] = {}
    for v in values or []:
        name, sep, num = v.partition("=")
        if not sep or name not in BOXED_SETS:
            raise ConfigError(f"--iou expects NAME=VALUE with NAME in {sorted(BOXED_SETS)}: {v!r}")
        try:
            thr = float(num)
        except ValueError:
            raise ConfigError(f"--iou {v!r}: {num!r} is not a number") from None
        if not 0.0 < thr <= 1.0:
            raise ConfigError(f"--iou {v!r}: threshold must be in (0, 1]")
        out[name] = thr
    return out


def _parse_sets(value: str) -> list[str]:
    from edgeface.evaluation.datasets import ALL_SETS

    names = [s.strip() for s in value.split(",") if s.strip()]
    bad = [n for n in names if n not in ALL_SETS]
    if bad or not names:
        raise ConfigError(f"--sets: unknown set(s) {bad or value!r}; choose from {list(ALL_SETS)}")
    return names


def _register_detect(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "detect",
        help="precision / recall / AP on boxed faces, and the LFW detection rate",
        description="Run the MTCNN detector on the boxed detection sets (dlib, masks) and on "
        "LFW, and report precision, recall and all-point AP, plus the share of LFW images "
        "where the central face is found.",
    )
    add_common_options(p)
    p.add_argument(
        "--sets",
        default="dlib,masks,lfw",
        help="comma-separated sets to run: dlib, masks, lfw (default: all)",
    )
    p.add_argument(
        "--iou",
        action="append",
        metavar="SET=THR",
        help="IoU threshold for a boxed set (defaults: dlib=0.4, masks=0.5); repeatable",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only N LFW images (spread evenly)")
    p.add_argument("--min-face", type=float, default=20.0, help="minimum face size in px")
    p.add_argument("--plot", metavar="PNG", help="write the precision-recall curves here")
    p.set_defaults(func=run_detect)


def _make_detector(min_face: float) -> Callable[[Any], Any]:
    from edgeface.detector import DetectorConfig, MTCNNDetector

    return MTCNNDetector(DetectorConfig(min_face_size=min_face)).detect


def run_detect(args: argparse.Namespace, detect: Callable[[Any], Any] | None = None) -> int:
    """``edgeface eval detect``; ``detect`` may be injected (tests, other detectors)."""
    from edgeface.evaluation.datasets import BOXED_SETS, LFW, find_data_root, lfw_images_dir
    from edgeface.evaluation.detection import (
        evaluate_annotations,
        evaluate_lfw,
        lfw_images,
        spread_sample,
    )
    from edgeface.imaging import load_image

    sets = _parse_sets(args.sets)
    ious = _parse_iou(args.iou)
    if args.limit is not None and args.limit <= 0:
        raise ConfigError(f"--limit must be positive, got {args.limit}")
    data = find_data_root(args.data)
    # load every input first: a bad folder or XML fails in a second, not after a long run
    boxed = {name: BOXED_SETS[name].load(data) for name in sets if name in BOXED_SETS}
    lfw_list = spread_sample(lfw_images(lfw_images_dir(data)), args.limit) if LFW in sets else []
    if detect is None:
        detect = _make_detector(args.min_face)

    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name, anns in boxed.items():
        thr = ious.get(name, BOXED_SETS[name].iou_threshold)
        items = progress(anns, args, desc=name, total=len(anns))
        rep = evaluate_annotations(name, items, detect, thr, load_image)
        results[name] = rep.summary(min_face_size=args.min_face)
        r, pr = rep.curve()
        curves[name] = (r, pr, results[name]["ap"], thr)
    if LFW in sets:
        items = progress(lfw_list, args, desc="lfw", total=len(lfw_list))
        lfw_rep = evaluate_lfw(items, detect, load_image, root=lfw_images_dir(data))
        results[LFW] = lfw_rep.summary()
    elapsed = time.perf_counter() - t0

    report = {
        "detector": {"name": "mtcnn-numpy", "min_face_size": args.min_face},
        "data": str(data),
        "sets": results,
        "seconds": round(elapsed, 1),
    }
    _print_detect(results)
    if args.out:
        write_json(args.out, report)
    if args.plot:
        if not curves:
            raise ConfigError("--plot needs a boxed set (dlib or masks) in --sets")
        from edgeface.evaluation.plots import plot_pr_curves

        plot_pr_curves(curves, args.plot)
    return 0


def _fmt(v: object) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _print_detect(results: dict[str, Any]) -> None:
    head = f"{'set':<7} {'IoU':>4} {'images':>6} {'faces':>6} {'dets':>6} "
    print(head + f"{'TP':>5} {'FP':>5} {'prec':>6} {'recall':>6} {'AP':>6}")
    for name, s in results.items():
        if "ap" not in s:
            continue
        print(
            f"{name:<7} {s['iou_threshold']:>4g} {s['images']:>6} {s['gt_faces']:>6} "
            f"{s['detections']:>6} {s['true_positives']:>5} {s['false_positives']:>5} "
            f"{_fmt(s['precision']):>6} {_fmt(s['recall']):>6} {_fmt(s['ap']):>6}"
        )
    s = results.get("lfw")
    if s:
        print(
            f"lfw: {s['detected']}/{s['images']} images with the central face found "
            f"(rate {_fmt(s['detection_rate'])}); {s['zero_faces']} with no face, "
            f"{s['central_face_missing']} without the central face"
        )


def _register_recognition(actions: argparse._SubParsersAction) -> None:
    from edgeface.cli.eval_identify import register_identify
    from edgeface.cli.eval_recognition import register_cfp, register_lfw

    register_lfw(actions)
    register_cfp(actions)
    register_identify(actions)


def _register_liveness(actions: argparse._SubParsersAction) -> None:
    from edgeface.cli.eval_liveness import register_liveness

    register_liveness(actions)


#: ``eval`` actions, in ``--help`` order; append new ``_register_<action>`` functions here
ACTIONS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_detect,
    _register_recognition,
    _register_liveness,
]
