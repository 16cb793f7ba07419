"""The steps of ``edgeface eval lfw`` / ``eval cfp`` that are not the CLI's: aligning CFP
with its crop cache, the verification report of a set of pairs, and deriving a calibration
(FAR thresholds) from every impostor pair of LFW.

The CLI (:mod:`edgeface.cli.eval_recognition`) only reads options, calls these and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder
from edgeface.evaluation import cfp, lfw
from edgeface.evaluation.verification import roc_curve, verification_report
from edgeface.recognition.calibration import Calibration

#: wraps an iterable to show progress: (items, description, total) -> items
Progress = Callable[[Any, str, int], Any]


def timing(aligned: lfw.AlignedSet, ms_embed: float) -> dict[str, float | None]:
    """Median detect / align time per image and embed time per face, in ms."""
    med = lambda xs: round(float(np.median(xs)), 2) if xs else None  # noqa: E731
    return {"detect_ms_median": med(aligned.ms_detect), "align_ms_median": med(aligned.ms_align),
            "embed_ms_per_face": round(ms_embed, 2)}  # fmt: skip


def verification(
    embedder: Embedder,
    backend: str,
    flip: bool,
    pairs: lfw.Pairs,
    aligned: lfw.AlignedSet,
    emb: np.ndarray,
    ms_embed: float,
    show: Callable[[tuple[str, int]], str],
    plot: str | None = None,
) -> dict[str, object]:
    """Score the pairs; the report shared by ``eval lfw`` and ``eval cfp`` (and its ROC plot
    when ``plot`` names a PNG). ``show`` names an image in the list of those without a face."""
    index = aligned.index()
    scores = lfw.pair_scores(pairs, index, emb)
    report = verification_report(scores, pairs.same, pairs.folds)
    pair_keys = pairs.images()
    no_face = [show(k) for k in pair_keys if not aligned.found[index[k]]]
    if plot:
        from edgeface.evaluation.plots import plot_roc_curves

        plot_roc_curves({f"{embedder.model_id} ({backend})": roc_curve(scores, pairs.same)}, plot)
    return {
        "embedder": {"model_id": embedder.model_id, "sha256": embedder.model_sha256,
                     "backend": backend, "flip": flip},
        "verification": report.to_dict(),
        "images": len(pair_keys),
        "no_face": {"count": len(no_face), "fallback": "mean landmarks of detected faces",
                    "images": no_face},
        "timing": timing(aligned, ms_embed),
    }  # fmt: skip


def cfp_aligned(
    images: Path, root: Path, keys: list[tuple[str, int]], cache: Path | None, wrap: Progress
) -> lfw.AlignedSet:
    """CFP's aligned crops of at least ``keys``, from ``cache`` when it has them (completed
    by the relaxed second pass if it predates it), else detected and aligned (the union with
    cfp-fp's images, so one cache serves both protocols) and cached."""
    aligned: lfw.AlignedSet | None = None
    if cache is not None and cache.is_file():
        aligned = lfw.AlignedSet.load(cache)
        if not set(keys) <= set(aligned.keys):
            aligned = None  # e.g. cached for cfp-ff, now asked for cfp-fp: align the union
        elif aligned.relaxed is None:  # a cache from before the relaxed second pass
            aligned = cfp.retry_misses(aligned, images)
            aligned.save(cache)
    if aligned is None:
        wanted = sorted(set(keys) | set(cfp.read_protocol(root, "cfp-fp").images()))
        aligned = cfp.align_cfp(images, wanted, MTCNNDetector(DetectorConfig()), wrap)
        if cache is not None:
            aligned.save(cache)
    return aligned


def subset(aligned: lfw.AlignedSet, keys: list[tuple[str, int]]) -> lfw.AlignedSet:
    """The crops of ``keys`` only, in that order (what a protocol embeds)."""
    idx = aligned.index()
    used = [idx[k] for k in keys]
    return lfw.AlignedSet(
        keys, aligned.crops[used], aligned.found[used], aligned.ms_detect, aligned.ms_align
    )


def calibrate_lfw(
    embedder: Embedder,
    aligned: lfw.AlignedSet,
    emb: np.ndarray,
    errata: lfw.Errata | None,
    *,
    flip: bool,
    backend: str,
) -> Calibration:
    """Thresholds down to FAR 1e-6 from *every* impostor pair of the images with a face found
    (about 24 M on the dev half), each with its support and the TAR it costs."""
    labels = lfw.identity_labels(aligned.keys, errata)
    use = aligned.found & (errata.keep(aligned.keys) if errata else True)
    found_emb, found_labels = emb[use], labels[use]
    top, total = lfw.all_impostor_scores(found_emb, found_labels)
    _, genuine = lfw.impostor_and_genuine_scores(found_emb, found_labels, max_impostors=1)
    cal = Calibration.from_top_scores(
        top,
        total,
        flip=flip,
        embedding_space=embedder.model_id,
        model_sha256=embedder.model_sha256,
        source={"dataset": "LFW dev half (deep-funneled), faces found by our MTCNN",
                "images": int(use.sum()), "genuine_pairs": len(genuine),
                "errata": None if errata is None else {
                    "file": Path(errata.source).name, "merged_names": len(errata.same),
                    "dropped_images": len(errata.drop)},
                "flip": flip, "backend": backend,
                "protocol": "every different-person pair of the images (i < j)"},
    )  # fmt: skip
    cal.source["tar_at_thresholds"] = {
        k: round(float(np.mean(genuine >= t)), 5) for k, t in cal.thresholds.items()
    }
    return cal
