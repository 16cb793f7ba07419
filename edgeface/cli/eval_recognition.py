"""``edgeface eval lfw`` and ``eval cfp``: recognition quality (``eval identify`` is
:mod:`edgeface.cli.eval_identify`).

All three share one expensive step, detect + align every image (cached with ``--crops``;
:mod:`edgeface.cli.eval_faces`), then embed with the configured embedder (``--embedder``
picks the manifest model, ``--backend`` and ``--model`` a variant of it, e.g. INT8).
``eval cfp`` scores pose: CFP frontal-profile (``--protocol cfp-fp``) and frontal-frontal
(``cfp-ff``) pairs, reported like LFW.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeface.cli.eval_faces import (
    add_model_options,
    aligned_crops,
    errata_of,
    images_dir,
    make_embedder,
)
from edgeface.cli.eval_options import add_common_options, progress, write_json
from edgeface.embedder import Embedder
from edgeface.errors import ConfigError
from edgeface.evaluation import cfp, lfw, recognition_eval
from edgeface.evaluation.datasets import find_data_root as data_root
from edgeface.recognition.calibration import calibration_beside, default_calibration_path


def register_lfw(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("lfw", help="LFW pairs: k-fold accuracy, TAR@FAR, ROC, EER")
    add_common_options(p)
    add_model_options(p)
    p.add_argument("--pairs", metavar="FILE", help="pairs file (default: DATA/lfw/pairs_dev.txt)")
    p.add_argument("--plot", metavar="PNG", help="write the ROC curve here")
    p.add_argument(
        "--errata",
        metavar="FILE",
        help="LFW label errors to leave out of the calibration (default: the packaged "
        "models/calibration/lfw_dev_errata.txt; 'none' for the raw labels)",
    )
    p.add_argument(
        "--write-calibration",
        nargs="?",
        const="",
        metavar="JSON",
        help="also derive FAR thresholds from all impostor pairs of every LFW image and write "
        "them (default: beside --model FILE as FILE.calibration.json, else the packaged "
        "calibration file of the embedding model)",
    )
    p.set_defaults(func=run_lfw)


def register_cfp(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "cfp", help="CFP frontal-profile / frontal-frontal pairs: k-fold accuracy, TAR@FAR, ROC"
    )
    add_common_options(p)
    add_model_options(p, "CFP Data/Images folder (default: DATA/cfp/Data/Images)")
    p.add_argument(
        "--protocol", choices=sorted(cfp.PROTOCOLS), default="cfp-fp", help="default cfp-fp"
    )
    p.add_argument("--plot", metavar="PNG", help="write the ROC curve here")
    p.set_defaults(func=run_cfp)


def run_lfw(args: argparse.Namespace) -> int:
    data = data_root(args.data)
    pairs = lfw.read_pairs(Path(args.pairs) if args.pairs else data / "lfw" / "pairs_dev.txt")
    images = images_dir(args)
    keys = lfw.all_images(images) if args.write_calibration is not None else pairs.images()
    t0 = time.perf_counter()
    aligned = aligned_crops(args, keys)
    embedder = make_embedder(args)
    emb, ms_embed = lfw.embed_crops(embedder, aligned.crops)
    out = _verify(args, embedder, pairs, aligned, emb, ms_embed, lambda k: f"{k[0]}_{k[1]:04d}")
    if args.write_calibration is not None:
        out["calibration"] = _calibrate(args, embedder, aligned, emb)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    _print_lfw(out)
    if args.out:
        write_json(args.out, out)
    return 0


def run_cfp(args: argparse.Namespace) -> int:
    root = data_root(args.data) / "cfp"
    images = Path(args.images) if args.images else root / "Data" / "Images"
    if not images.is_dir():
        raise ConfigError(f"{images}: no such CFP images folder")
    pairs = cfp.read_protocol(root, args.protocol)
    keys = pairs.images()
    t0 = time.perf_counter()
    cache = Path(args.crops) if args.crops else None
    aligned = recognition_eval.cfp_aligned(
        images, root, keys, cache, lambda it, desc, n: progress(it, args, desc, n)
    )
    embedder = make_embedder(args)
    # embed only what the protocol uses (cfp-ff needs no profiles)
    used = recognition_eval.subset(aligned, keys)
    emb, ms_embed = lfw.embed_crops(embedder, used.crops)
    out = _verify(args, embedder, pairs, used, emb, ms_embed, lambda k: f"{k[0]}/{k[1]:02d}")
    out["protocol"] = args.protocol
    idx = aligned.index()
    relaxed = [] if aligned.relaxed is None else aligned.relaxed[[idx[k] for k in keys]]
    out["found_by_relaxed_retry"] = {
        "count": int(np.sum(relaxed)),
        "thresholds": list(cfp.RELAXED_THRESHOLDS),
        "images": [f"{k[0]}/{k[1]:02d}" for k, r in zip(keys, relaxed, strict=False) if r],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    _print_lfw(out)
    if args.out:
        write_json(args.out, out)
    return 0


def _verify(
    args: argparse.Namespace,
    embedder: Embedder,
    pairs: lfw.Pairs,
    aligned: lfw.AlignedSet,
    emb: np.ndarray,
    ms_embed: float,
    show: Callable[[tuple[str, int]], str],
) -> dict[str, object]:
    return recognition_eval.verification(
        embedder, args.backend, args.flip, pairs, aligned, emb, ms_embed, show, args.plot
    )


def _calibrate(
    args: argparse.Namespace, embedder: Embedder, aligned: lfw.AlignedSet, emb: np.ndarray
) -> dict[str, object]:
    """Derive the FAR thresholds (:func:`recognition_eval.calibrate_lfw`) and write them."""
    cal = recognition_eval.calibrate_lfw(
        embedder, aligned, emb, errata_of(args), flip=args.flip, backend=args.backend
    )
    if args.write_calibration:
        path = Path(args.write_calibration)
    elif args.model:  # a file of its own (e.g. INT8): its calibration goes beside it
        path = calibration_beside(Path(args.model), args.flip)
    else:
        path = default_calibration_path(embedder.model_id, args.flip)
    path.parent.mkdir(parents=True, exist_ok=True)
    cal.save(path)
    return {"path": str(path), "thresholds": cal.thresholds, "source": cal.source,
            "support": cal.support}  # fmt: skip


def _print_lfw(out: dict) -> None:
    v = out["verification"]
    retried = out.get("found_by_relaxed_retry", {}).get("count")
    again = "" if retried is None else f" (found by the relaxed second pass: {retried})"
    print(
        f"pairs {v['pairs']}  images {out['images']}  no face found {out['no_face']['count']}"
        + again
    )
    print(f"accuracy {100 * v['accuracy']:.2f}% +- {100 * v['accuracy_std']:.2f}  "
          f"(folds: {', '.join(f'{100 * a:.2f}' for a in v['fold_accuracies'])})")  # fmt: skip
    for far, tar in v["tar_at_far"].items():
        print(f"TAR @ FAR {far}: {100 * tar:.2f}%  (threshold {v['thresholds_at_far'][far]:.4f})")
    print(f"ROC AUC {v['roc_auc']:.5f}  EER {100 * v['eer']:.2f}%")
    print("timing " + json.dumps(out["timing"]))
    if "calibration" in out:
        cal = out["calibration"]
        print(f"calibration written to {cal['path']}")
        tars = cal["source"]["tar_at_thresholds"]
        for key, thr in cal["thresholds"].items():
            sup = cal["support"][key]
            above, total = sup["impostors_above"], sup["impostor_pairs"]
            print(f"  FAR {key}: threshold {thr:.4f}  TAR {100 * tars[key]:.2f}%  "
                  f"({above} of {total} impostor pairs above)")  # fmt: skip
