"""``edgeface eval lfw``, ``eval cfp`` and ``eval identify``: recognition quality.

All share one expensive step, detect + align every image (cached with ``--crops``), then
embed with the configured embedder (``--embedder`` picks the manifest model, ``--backend`` and
``--model`` a variant of it, e.g. INT8). ``eval cfp`` scores pose: CFP frontal-profile
(``--protocol cfp-fp``) and frontal-frontal (``cfp-ff``) pairs, reported like LFW.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeface.cli.eval_options import add_common_options, progress, write_json
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.errors import ConfigError
from edgeface.evaluation import cfp, lfw
from edgeface.evaluation.datasets import find_data_root as data_root
from edgeface.evaluation.verification import roc_curve, verification_report
from edgeface.recognition.calibration import (
    Calibration,
    calibration_beside,
    default_calibration_path,
)


def add_model_options(
    p: argparse.ArgumentParser, images_help: str = "LFW images/ folder (default: DATA/lfw/images)"
) -> None:
    p.add_argument("--images", metavar="DIR", help=images_help)
    p.add_argument(
        "--crops", metavar="NPZ", help="cache of aligned crops: read if present, else write"
    )
    p.add_argument(
        "--backend", default="onnxruntime", help="embedder backend (default onnxruntime)"
    )
    p.add_argument(
        "--embedder",
        metavar="NAME",
        default=EmbedderConfig.model,
        help=f"manifest model whose preprocessing and embedding space apply "
        f"(default {EmbedderConfig.model})",
    )
    p.add_argument(
        "--model", metavar="FILE", help="embedding model file, a variant of --embedder "
        "(default: the manifest file)"
    )  # fmt: skip
    p.add_argument(
        "--detector-backend",
        default="numpy",
        help="MTCNN backend for detect + align (default numpy; onnxruntime, litert)",
    )
    p.add_argument(
        "--detector-models",
        metavar="DIR",
        help="folder with mtcnn-{pnet,rnet,onet}-PRECISION.{onnx,tflite} (edgeface quantize "
        "build), with --detector-precision; use a --crops file per detector",
    )
    p.add_argument("--detector-precision", default="int8", choices=["fp32", "int8"])
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the mirrored crop's embedding (default: on, as the runtime does)",
    )


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


def _images_dir(args: argparse.Namespace) -> Path:
    images = Path(args.images) if args.images else data_root(args.data) / "lfw" / "images"
    if not images.is_dir():
        raise ConfigError(f"{images}: no such LFW images folder")
    return images


def _aligned(args: argparse.Namespace, keys: list[tuple[str, int]]) -> lfw.AlignedSet:
    cache = Path(args.crops) if args.crops else None
    if cache is not None and cache.is_file():
        cached = lfw.AlignedSet.load(cache)
        if set(keys) <= set(cached.keys):
            return cached
    detector = MTCNNDetector(_detector_config(args))
    aligned = lfw.align_images(
        _images_dir(args), keys, detector, lambda it, desc, n: progress(it, args, desc, n)
    )
    if cache is not None:
        aligned.save(cache)
    return aligned


def _detector_config(args: argparse.Namespace) -> DetectorConfig:
    """The default cascade, or the one built by ``quantize build`` (e.g. INT8 ONNX)."""
    backend = getattr(args, "detector_backend", "numpy")
    if backend == "numpy":
        return DetectorConfig()
    folder = getattr(args, "detector_models", None)
    if not folder:
        raise ConfigError(f"--detector-backend {backend} needs --detector-models DIR")
    ext = {"onnxruntime": "onnx", "litert": "tflite"}.get(backend)
    if ext is None:
        raise ConfigError(f"--detector-backend: numpy, onnxruntime or litert, got {backend!r}")
    models = {
        net: str(Path(folder) / f"mtcnn-{net}-{args.detector_precision}.{ext}")
        for net in ("pnet", "rnet", "onet")
    }
    return DetectorConfig(backend=backend, models=models)


def _embedder(args: argparse.Namespace) -> Embedder:
    return Embedder.from_config(
        EmbedderConfig(model=args.embedder, backend=args.backend, path=args.model, flip=args.flip)
    )


def _timing(aligned: lfw.AlignedSet, ms_embed: float) -> dict[str, float]:
    med = lambda xs: round(float(np.median(xs)), 2) if xs else None  # noqa: E731
    return {"detect_ms_median": med(aligned.ms_detect), "align_ms_median": med(aligned.ms_align),
            "embed_ms_per_face": round(ms_embed, 2)}  # fmt: skip


def run_lfw(args: argparse.Namespace) -> int:
    data = data_root(args.data)
    pairs = lfw.read_pairs(Path(args.pairs) if args.pairs else data / "lfw" / "pairs_dev.txt")
    images = _images_dir(args)
    keys = lfw.all_images(images) if args.write_calibration is not None else pairs.images()
    t0 = time.perf_counter()
    aligned = _aligned(args, keys)
    embedder = _embedder(args)
    emb, ms_embed = lfw.embed_crops(embedder, aligned.crops)
    out = _verify(args, embedder, pairs, aligned, emb, ms_embed, lambda k: f"{k[0]}_{k[1]:04d}")
    if args.write_calibration is not None:
        out["calibration"] = _calibrate(args, embedder, aligned, emb)
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
    """Score the pairs; the report shared by ``eval lfw`` and ``eval cfp`` (and its plot)."""
    index = aligned.index()
    scores = lfw.pair_scores(pairs, index, emb)
    report = verification_report(scores, pairs.same, pairs.folds)
    pair_keys = pairs.images()
    no_face = [show(k) for k in pair_keys if not aligned.found[index[k]]]
    if args.plot:
        from edgeface.evaluation.plots import plot_roc_curves

        plot_roc_curves(
            {f"{embedder.model_id} ({args.backend})": roc_curve(scores, pairs.same)}, args.plot
        )
    return {
        "embedder": {"model_id": embedder.model_id, "sha256": embedder.model_sha256,
                     "backend": args.backend, "flip": args.flip},
        "verification": report.to_dict(),
        "images": len(pair_keys),
        "no_face": {"count": len(no_face), "fallback": "mean landmarks of detected faces",
                    "images": no_face},
        "timing": _timing(aligned, ms_embed),
    }  # fmt: skip


def run_cfp(args: argparse.Namespace) -> int:
    root = data_root(args.data) / "cfp"
    images = Path(args.images) if args.images else root / "Data" / "Images"
    if not images.is_dir():
        raise ConfigError(f"{images}: no such CFP images folder")
    pairs = cfp.read_protocol(root, args.protocol)
    keys = pairs.images()
    t0 = time.perf_counter()
    cache = Path(args.crops) if args.crops else None
    aligned: lfw.AlignedSet | None = None
    if cache is not None and cache.is_file():
        aligned = lfw.AlignedSet.load(cache)
        if not set(keys) <= set(aligned.keys):
            aligned = None  # e.g. cached for cfp-ff, now asked for cfp-fp: align the union
        elif aligned.relaxed is None:  # a cache from before the relaxed second pass
            aligned = cfp.retry_misses(aligned, images)
            if cache is not None:
                aligned.save(cache)
    if aligned is None:
        wanted = sorted(set(keys) | set(cfp.read_protocol(root, "cfp-fp").images()))
        aligned = cfp.align_cfp(
            images,
            wanted,
            MTCNNDetector(DetectorConfig()),
            lambda it, desc, n: progress(it, args, desc, n),
        )
        if cache is not None:
            aligned.save(cache)
    embedder = _embedder(args)
    # embed only what the protocol uses (cfp-ff needs no profiles)
    idx = aligned.index()
    used = [idx[k] for k in keys]
    subset = lfw.AlignedSet(
        keys, aligned.crops[used], aligned.found[used], aligned.ms_detect, aligned.ms_align
    )
    emb, ms_embed = lfw.embed_crops(embedder, subset.crops)
    out = _verify(args, embedder, pairs, subset, emb, ms_embed, lambda k: f"{k[0]}/{k[1]:02d}")
    out["protocol"] = args.protocol
    relaxed = [] if aligned.relaxed is None else aligned.relaxed[used]
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


def _calibrate(
    args: argparse.Namespace, embedder: Embedder, aligned: lfw.AlignedSet, emb: np.ndarray
) -> dict[str, object]:
    """Thresholds down to FAR 1e-6 from *every* impostor pair of the images with a face found
    (about 24 M on the dev half), each with its support and the TAR it costs."""
    errata = _errata(args)
    labels = lfw.identity_labels(aligned.keys, errata)
    use = aligned.found & (errata.keep(aligned.keys) if errata else True)
    found_emb, found_labels = emb[use], labels[use]
    top, total = lfw.all_impostor_scores(found_emb, found_labels)
    _, genuine = lfw.impostor_and_genuine_scores(found_emb, found_labels, max_impostors=1)
    cal = Calibration.from_top_scores(
        top,
        total,
        flip=args.flip,
        embedding_space=embedder.model_id,
        model_sha256=embedder.model_sha256,
        source={"dataset": "LFW dev half (deep-funneled), faces found by our MTCNN",
                "images": int(use.sum()), "genuine_pairs": len(genuine),
                "errata": None if errata is None else {
                    "file": Path(errata.source).name, "merged_names": len(errata.same),
                    "dropped_images": len(errata.drop)},
                "flip": args.flip, "backend": args.backend,
                "protocol": "every different-person pair of the images (i < j)"},
    )  # fmt: skip
    cal.source["tar_at_thresholds"] = {
        k: round(float(np.mean(genuine >= t)), 5) for k, t in cal.thresholds.items()
    }
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


def _errata(args: argparse.Namespace) -> lfw.Errata | None:
    if getattr(args, "errata", None) == "none":
        return None
    return lfw.read_errata(Path(args.errata) if getattr(args, "errata", None) else None)


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


def run_identify(args: argparse.Namespace) -> int:
    keys = lfw.all_images(_images_dir(args))
    aligned = _aligned(args, keys)
    embedder = _embedder(args)
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
    errata = _errata(args)
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
