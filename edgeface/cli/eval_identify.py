"""``edgeface eval identify``: open-set 1:N on LFW, rank-1 and DIR@FAR, or with ``--door``
the door's protocol (N enrolled, everyone else a stranger).

Detect + align + embed are :mod:`edgeface.cli.eval_faces`', shared with ``eval lfw``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgeface.cli.eval_faces import (
    add_model_options,
    aligned_crops,
    errata_of,
    images_dir,
    make_embedder,
)
from edgeface.cli.eval_options import add_common_options, write_json
from edgeface.evaluation import lfw
from edgeface.evaluation.datasets import find_data_root as data_root


def register_identify(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("identify", help="open-set 1:N on LFW: rank-1 and DIR@FAR")
    add_common_options(p)
    add_model_options(p)
    p.add_argument(
        "--door",
        action="store_true",
        help="the door's protocol: N enrolled, every other dev person a stranger, DIR at "
        "FPIR 1e-2/1e-3/1e-4 for score normalization, margin and k-frame aggregation",
    )
    p.add_argument("--gallery-size", type=int, default=100, help="with --door: enrolled (100)")
    p.add_argument("--repeats", type=int, default=20, help="with --door: random splits (20)")
    p.add_argument("--k", type=int, default=3, help="with --door: frames per attempt (3)")
    p.add_argument("--pairs", metavar="FILE", help="pairs file (default: DATA/lfw/pairs_dev.txt)")
    p.add_argument("--errata", metavar="FILE", help="LFW label errors ('none': raw labels)")
    p.set_defaults(func=run_identify)


def run_identify(args: argparse.Namespace) -> int:
    keys = lfw.all_images(images_dir(args))
    aligned = aligned_crops(args, keys)
    embedder = make_embedder(args)
    emb, _ = lfw.embed_crops(embedder, aligned.crops)
    if args.door:
        return _door_protocol(args, aligned, emb, embedder.model_id)
    report = lfw.open_set_identification(aligned.keys, emb).to_dict()
    print(f"gallery {report['gallery_size']} people, {report['genuine_probes']} genuine probes, "
          f"{report['impostor_probes']} impostor probes")  # fmt: skip
    print(f"rank-1 {100 * report['rank1']:.2f}%")
    for far, v in report["dir_at_far"].items():
        print(f"DIR @ FAR {far}: {100 * v:.2f}%  (threshold {report['thresholds'][far]:.4f})")
    if args.out:
        write_json(args.out, {"embedder": embedder.model_id, "identification": report})
    return 0


def _door_protocol(
    args: argparse.Namespace, aligned: lfw.AlignedSet, emb: np.ndarray, model_id: str
) -> int:
    from edgeface.evaluation import openset

    data = data_root(args.data)
    pairs = lfw.read_pairs(Path(args.pairs) if args.pairs else data / "lfw" / "pairs_dev.txt")
    errata = errata_of(args)
    canon = errata.canonical if errata else (lambda n: n)
    keep = errata.keep(aligned.keys) if errata else np.ones(len(aligned.keys), bool)
    keys = [(canon(n), i) for (n, i), k in zip(aligned.keys, keep, strict=True) if k]
    emb = emb[keep]
    pair_people = {canon(k[0]) for k in pairs.images()}
    splits, cohort = openset.make_splits(
        keys, pair_people, gallery_size=args.gallery_size, repeats=args.repeats
    )
    frames = openset.frame_report(emb, splits, cohort)
    attempts = openset.attempt_report(emb, splits, k=args.k)
    print(f"{args.gallery_size} enrolled (3 photos each), {args.repeats} random splits, "
          f"cohort {len(cohort)} images")  # fmt: skip
    print(openset.format_table("single frames", frames, "probes"))
    print(openset.format_table(f"attempts of {args.k} frames", attempts, "attempts"))
    if args.out:
        write_json(args.out, {"embedder": model_id, "gallery_size": args.gallery_size,
                              "repeats": args.repeats, "cohort_images": len(cohort),
                              "frames": frames, "attempts": attempts})  # fmt: skip
    return 0
