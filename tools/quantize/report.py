"""``edgeface quantize report``: what each backend x precision costs and what it loses.

Embedder variants (MobileFaceNet, and EdgeFace-XS / XXS when the artifacts hold them) are
compared, each with its own float model, on the LFW dev folds with the crops of our own detector
and aligner (computed once, cached, shared by every variant): size on disk, ms per face at
batch 1, k-fold accuracy, TAR at FAR 1e-3, and the cosine between each face's float and
quantized embedding. MTCNN variants are compared with the float NumPy cascade (box IoU per
face) and on the boxed detection sets (AP). Writes JSON, a Markdown table and a ROC PNG.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeface_tools.quantize.artifacts import MANIFEST_NAME
from edgeface_tools.quantize.build import EMBEDDERS

from edgeface.backends import format_backends
from edgeface.errors import ConfigError, StorageError
from edgeface.modelstore import resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

Log = Callable[[str], None]
BACKEND_OF_FORMAT = format_backends()  # from the backend registry

#: issue 4 goals, relative to the float model
GOALS = {
    "accuracy_drop_max": 0.002,
    "tar_drop_max": 0.005,
    "cosine_mean_min": 0.98,
    "int8_size_max": 1_300_000,
    "onnx_int8_time_ratio_max": 0.8,
    "mtcnn_iou": 0.9,
    "mtcnn_agree_min": 0.98,
}
#: issue 20 goals for the 512-d EdgeFace models: INT8 within 0.3 point of float, and at most
#: 1.5x the INT8 MobileFaceNet's time per face (same run); no size goal (3-9 MB float)
EDGEFACE_GOALS = {
    "accuracy_drop_max": 0.003,
    "tar_drop_max": 0.005,
    "cosine_mean_min": 0.98,
    "int8_size_max": None,
    "onnx_int8_time_ratio_max": None,
    "time_vs_mobilefacenet_int8_max": 1.5,
}
GOALS_BY_MODEL: dict[str, dict[str, Any]] = {
    "mobilefacenet": GOALS,
    "edgeface-xs": EDGEFACE_GOALS,
    "edgeface-xxs": EDGEFACE_GOALS,
}


@dataclass
class Variant:
    name: str
    path: Path
    backend: str
    precision: str
    model: str


def load_artifacts(art_dir: Path) -> list[dict[str, Any]]:
    path = Path(art_dir) / MANIFEST_NAME
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["artifacts"])
    except FileNotFoundError:
        raise ConfigError(f"{art_dir}: no {MANIFEST_NAME}; run edgeface quantize build") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable artifacts manifest ({exc})") from exc


def embedder_variants(art_dir: Path, artifacts: list[dict[str, Any]]) -> list[Variant]:
    """Per embedder group: its float ONNX first (the reference), then its artifacts.

    MobileFaceNet's float model is always measured (the baseline every table compares with).
    """
    groups = [
        g for g in EMBEDDERS if g == "mobilefacenet" or any(a["model"] == g for a in artifacts)
    ]
    out: list[Variant] = []
    for group in groups:
        out.append(
            Variant("float onnx", resolve_model(EMBEDDERS[group]), "onnxruntime", "fp32", group)
        )
        for a in artifacts:
            if a["model"] == group:
                backend = BACKEND_OF_FORMAT[a["format"]]
                stem = a["file"].rsplit(".", 1)[0].replace(f"{group}-", "")
                label = f"{stem} {a['format']}"
                out.append(
                    Variant(label, Path(art_dir) / a["file"], backend, a["precision"], group)
                )
    return out


def _ms_per_face(embedder: Any, crop: np.ndarray, runs: int) -> float:
    for _ in range(5):
        embedder.embed(crop)
    t0 = time.perf_counter()
    for _ in range(runs):
        embedder.embed(crop)
    return (time.perf_counter() - t0) * 1000 / runs


def lfw_aligned(lfw_dir: Path, cache: Path | None, log: Log) -> tuple[Any, Any]:
    """LFW dev pairs and the aligned crops of every pair image (cached: detection is slow)."""
    from edgeface.detector import MTCNNDetector
    from edgeface.evaluation.lfw import AlignedSet, align_images, read_pairs

    pairs = read_pairs(lfw_dir / "pairs_dev.txt")
    keys = pairs.images()
    if cache is not None and cache.is_file():
        aligned = AlignedSet.load(cache)
        if aligned.keys == keys:
            return pairs, aligned
    log(f"aligning {len(keys)} LFW images with the MTCNN detector (cached afterwards)")
    aligned = align_images(lfw_dir / "images", keys, MTCNNDetector())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".part.npz")
        aligned.save(tmp)
        tmp.replace(cache)
    return pairs, aligned


def embedder_report(
    variants: list[Variant],
    lfw_dir: Path,
    *,
    cache: Path | None,
    runs: int,
    threads: int,
    log: Log,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from edgeface.backends import open_session
    from edgeface.embedder import Embedder
    from edgeface.evaluation.lfw import embed_crops, pair_scores
    from edgeface.evaluation.verification import roc_curve, verification_report

    pairs, aligned = lfw_aligned(lfw_dir, cache, log)
    index = aligned.index()
    rows: list[dict[str, Any]] = []
    rocs: dict[str, Any] = {}
    refs: dict[str, np.ndarray] = {}
    for v in variants:
        log(f"embedder: {v.model} {v.name} ({v.path.name})")
        prep = get_entry(EMBEDDERS[v.model]).preprocessing
        session = open_session(v.path, v.backend, threads=threads)
        emb = Embedder(session, preprocessing=prep, model_id=v.model, model_sha256="", flip=False)
        e, _ = embed_crops(emb, aligned.crops)
        ref = refs.setdefault(v.model, e)  # the group's float model comes first
        cos = np.einsum("ij,ij->i", e, ref)
        scores = pair_scores(pairs, index, e)
        rep = verification_report(scores, pairs.same, pairs.folds)
        rocs[f"{v.model} {v.name}"] = roc_curve(scores, pairs.same)
        rows.append(
            {
                "model": v.model,
                "variant": v.name,
                "backend": v.backend,
                "precision": v.precision,
                "file": v.path.name,
                "size_bytes": v.path.stat().st_size,
                "sha256": sha256_file(v.path),
                "ms_per_face_b1": round(_ms_per_face(emb, aligned.crops[:1], runs), 3),
                "accuracy": round(rep.accuracy, 5),
                "accuracy_std": round(rep.accuracy_std, 5),
                "tar_at_far_1e-3": round(rep.tar["1e-03"], 5),
                "cosine_to_float_mean": round(float(cos.mean()), 5),
                "cosine_to_float_p1": round(float(np.percentile(cos, 1)), 5),
                "faces": len(e),
            }
        )
    bases = {r["model"]: r for r in reversed(rows) if r["variant"] == "float onnx"}
    mfn_int8 = next(
        (r for r in rows if r["model"] == "mobilefacenet" and r["variant"] == "int8 onnx"), None
    )
    for r in rows:
        base = bases[r["model"]]
        r["accuracy_delta"] = round(r["accuracy"] - base["accuracy"], 5)
        r["tar_delta"] = round(r["tar_at_far_1e-3"] - base["tar_at_far_1e-3"], 5)
        r["time_ratio_vs_float_onnx"] = round(r["ms_per_face_b1"] / base["ms_per_face_b1"], 3)
        if mfn_int8 is not None:
            r["time_ratio_vs_mobilefacenet_int8_onnx"] = round(
                r["ms_per_face_b1"] / mfn_int8["ms_per_face_b1"], 3
            )
        if r["precision"] == "int8":
            r["meets_goals"] = _meets_goals(r, GOALS_BY_MODEL[r["model"]])
    meta = {
        "lfw_pairs": len(pairs.same),
        "aligned_images": len(aligned.keys),
        "detector_misses": int((~aligned.found).sum()),
    }
    return rows, {"rocs": rocs, **meta}


def _meets_goals(r: dict[str, Any], goals: dict[str, Any]) -> bool:
    """An INT8 row against its model's goals; a goal set to None does not apply."""
    checks = [
        -r["accuracy_delta"] <= goals["accuracy_drop_max"],
        -r["tar_delta"] <= goals["tar_drop_max"],
        r["cosine_to_float_mean"] >= goals["cosine_mean_min"],
    ]
    if goals.get("int8_size_max") is not None:
        checks.append(r["size_bytes"] <= goals["int8_size_max"])
    if goals.get("onnx_int8_time_ratio_max") is not None and r["backend"] == "onnxruntime":
        checks.append(r["time_ratio_vs_float_onnx"] <= goals["onnx_int8_time_ratio_max"])
    ratio = r.get("time_ratio_vs_mobilefacenet_int8_onnx")
    if goals.get("time_vs_mobilefacenet_int8_max") is not None and ratio is not None:
        checks.append(ratio <= goals["time_vs_mobilefacenet_int8_max"])
    return all(checks)


# ------------------------------------------------------------------------------------ MTCNN


def detector_variants(art_dir: Path, artifacts: list[dict[str, Any]]) -> dict[str, Any]:
    """name -> DetectorConfig for every complete (pnet+rnet+onet) format x precision set."""
    from edgeface.detector import DetectorConfig

    sets: dict[tuple[str, str], dict[str, str]] = {}
    for a in artifacts:
        if a["model"].startswith("mtcnn-"):
            net = a["model"].split("-", 1)[1]
            sets.setdefault((a["format"], a["precision"]), {})[net] = str(Path(art_dir) / a["file"])
    out: dict[str, Any] = {"float numpy": DetectorConfig()}
    nets = {"pnet", "rnet", "onet"}
    for (fmt, prec), models in sorted(sets.items()):
        if set(models) == nets:
            out[f"{prec} {fmt}"] = DetectorConfig(backend=BACKEND_OF_FORMAT[fmt], models=models)
    for fmt in sorted({f for f, _ in sets}):
        int8, fp32 = sets.get((fmt, "int8"), {}), sets.get((fmt, "fp32"), {})
        if set(int8) == nets and "onet" in fp32:
            # O-Net makes the landmarks alignment uses; P-Net (the pyramid) is most of the work
            mixed = {**int8, "onet": fp32["onet"]}
            out[f"int8 P/R + fp32 O {fmt}"] = DetectorConfig(
                backend=BACKEND_OF_FORMAT[fmt], models=mixed
            )
    return out


#: the float cascade on inputs with +-1 grey level of noise: how much the float cascade itself
#: moves its boxes under an invisible change of the input (the yardstick for the IoU goal)
NOISE_FLOOR = "float numpy, input +-1 grey level"


def grey_noise(image: np.ndarray, seed: int) -> np.ndarray:
    """``image`` with independent -1 / 0 / +1 steps per pixel and channel (seeded)."""
    step = np.random.default_rng(seed).integers(-1, 2, image.shape)
    return np.clip(image.astype(np.int16) + step, 0, 255).astype(np.uint8)


def detector_report(
    configs: dict[str, Any],
    data_root: Path,
    *,
    max_images: int,
    log: Log,
    noise_floor: bool = True,
) -> list[dict[str, Any]]:
    """One row per detector config; the first config is the reference for box agreement.

    With ``noise_floor`` a last row runs the reference config on every image with +-1 grey
    level of noise (:data:`NOISE_FLOOR`): no quantized cascade can be expected to agree with
    the float boxes much better than the float cascade agrees with itself there.
    """
    from edgeface.detector import MTCNNDetector
    from edgeface.evaluation.datasets import BOXED_SETS
    from edgeface.evaluation.detection import evaluate_annotations
    from edgeface.evaluation.landmarks import landmark_errors, load_dlib_landmark_sets
    from edgeface.imaging import load_image

    # what users see of a detector is the aligned crop: its five points against dlib's
    # 68-point annotations (5 points derived, inter-ocular normalized)
    landmarks = load_dlib_landmark_sets(data_root / "detection" / "dlib_faces")
    sets = {}
    for name, boxed in BOXED_SETS.items():
        anns = boxed.load(data_root)
        step = max(1, len(anns) // max_images)
        sets[name] = (boxed, anns[::step][:max_images])
    cache: dict[Path, np.ndarray] = {}

    def load(p: Path) -> np.ndarray:
        if p not in cache:
            cache[p] = load_image(p)
        return cache[p]

    gt_boxes = {
        a.image: (a.boxes[~a.ignore], boxed.iou_threshold)
        for boxed, anns in sets.values()
        for a in anns
    }
    rows: list[dict[str, Any]] = []
    reference: dict[Path, np.ndarray] = {}
    runs = [(name, cfg, False) for name, cfg in configs.items()]
    if noise_floor and configs:
        runs.append((NOISE_FLOOR, next(iter(configs.values())), True))
    for vname, cfg, noisy in runs:
        log(f"detector: {vname}")
        det = MTCNNDetector(cfg)
        faces_of: dict[Path, list[Any]] = {}
        times: list[float] = []
        for _, anns in sets.values():
            for i, ann in enumerate(anns):
                img = grey_noise(load(ann.image), i) if noisy else load(ann.image)
                t0 = time.perf_counter()
                faces_of[ann.image] = det.detect(img)
                times.append((time.perf_counter() - t0) * 1000)
        row: dict[str, Any] = {"variant": vname, "backend": cfg.backend}
        for sname, (boxed, anns) in sets.items():
            # detections are already computed: "load" hands the path through and "detect"
            # looks the faces up, so AP uses exactly the boxes the IoU agreement uses
            rep = evaluate_annotations(
                sname, anns, faces_of.__getitem__, boxed.iou_threshold, lambda p: p
            )
            summary = rep.summary()
            row[f"ap_{sname}"] = summary["ap"]
            row[f"recall_{sname}"] = summary["recall"]
        if landmarks:
            lm = landmark_errors(
                {p: f for p, f in landmarks.items() if p in faces_of}, faces_of
            ).summary()
            row["landmark_nme_dlib"] = lm["nme_mean"]
            row["landmark_nme_dlib_median"] = lm["nme_median"]
            row["landmark_faces_dlib"] = lm["matched"]
        row["ms_per_image"] = round(float(np.mean(times)), 2)
        found = {p: np.array([f.box for f in fs]).reshape(-1, 4) for p, fs in faces_of.items()}
        if not reference:
            reference = found
        all_iou, gt_iou = _agreement(reference, found, gt_boxes)
        for key, arr in (("", all_iou), ("_gt", gt_iou)):
            row[f"reference_faces{key}"] = len(arr)
            row[f"iou_mean{key}"] = round(float(arr.mean()), 4) if len(arr) else None
            agree = float(np.mean(arr >= GOALS["mtcnn_iou"])) if len(arr) else None
            row[f"agree_iou_0.9{key}"] = None if agree is None else round(agree, 4)
        row["meets_goals"] = (
            None
            if noisy
            else bool(
                row["agree_iou_0.9_gt"] is not None
                and row["agree_iou_0.9_gt"] >= GOALS["mtcnn_agree_min"]
            )
        )
        row["images"] = len(found)
        rows.append(row)
    return rows


def _agreement(
    reference: dict[Path, np.ndarray],
    found: dict[Path, np.ndarray],
    gt: dict[Path, tuple[np.ndarray, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU of each float-cascade box with the variant's boxes: over every float
    detection, and over the float detections that are annotated faces (the goal's "faces";
    background false positives of the float cascade are not faces whose box must be kept)."""
    from edgeface.evaluation.detection import iou_matrix

    all_iou: list[float] = []
    gt_iou: list[float] = []
    for p, ref_boxes in reference.items():
        if len(ref_boxes) == 0:
            continue
        got = found.get(p, np.zeros((0, 4)))
        best = iou_matrix(ref_boxes, got).max(axis=1) if len(got) else np.zeros(len(ref_boxes))
        all_iou.extend(best.tolist())
        gt_b, thr = gt.get(p, (np.zeros((0, 4)), 1.0))
        if len(gt_b):
            is_face = iou_matrix(ref_boxes, gt_b).max(axis=1) >= thr
            gt_iou.extend(best[is_face].tolist())
    return np.asarray(all_iou), np.asarray(gt_iou)


# ----------------------------------------------------------------------------------- output


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if pct:
        return f"{100 * v:.2f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    lines = ["## Embedders: float vs quantized (LFW dev folds)", ""]
    lines.append(
        "| model | variant | backend | size (KB) | ms/face b1 | LFW acc % | TAR@FAR1e-3 % "
        "| cos mean | cos p1 | goals |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in result.get("embedder", []):
        lines.append(
            f"| {r.get('model', 'mobilefacenet')} | {r['variant']} | {r['backend']} "
            f"| {r['size_bytes'] / 1000:.0f} "
            f"| {r['ms_per_face_b1']:.2f} | {_fmt(r['accuracy'], True)} "
            f"| {_fmt(r['tar_at_far_1e-3'], True)} | {r['cosine_to_float_mean']:.4f} "
            f"| {r['cosine_to_float_p1']:.4f} | {_fmt(r.get('meets_goals'))} |"
        )
    if result.get("detector"):
        lines += ["", "## MTCNN: float vs quantized", ""]
        first = result["detector"][0]
        sets = [k for k in first if k.startswith(("ap_", "recall_", "landmark_nme_dlib"))]
        names = {"landmark_nme_dlib": "landmark NME dlib", "landmark_nme_dlib_median": "median"}
        head = " | ".join(
            names.get(k, k.replace("ap_", "AP ").replace("recall_", "recall ")) for k in sets
        )
        lines.append(
            f"| variant | backend | ms/image | {head} | IoU mean | IoU>=0.9 % (all) "
            "| IoU>=0.9 % (GT faces) | goals |"
        )
        lines.append("|---|---|---:|" + "---:|" * len(sets) + "---:|---:|---:|---|")
        for r in result["detector"]:
            aps = " | ".join(_fmt(r.get(k)) for k in sets)
            lines.append(
                f"| {r['variant']} | {r['backend']} | {r['ms_per_image']:.1f} | {aps} "
                f"| {_fmt(r['iou_mean'])} | {_fmt(r['agree_iou_0.9'], True)} "
                f"| {_fmt(r['agree_iou_0.9_gt'], True)} | {_fmt(r['meets_goals'])} |"
            )
    notes = result.get("notes", {})
    if notes:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in notes.items())]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], rocs: dict[str, Any], out_dir: Path) -> list[Path]:
    from edgeface.evaluation.plots import plot_roc_curves

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        js = out_dir / "quantization_report.json"
        md = out_dir / "quantization_report.md"
        tmp = js.with_suffix(".json.part")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp.replace(js)
        tmp = md.with_suffix(".md.part")
        tmp.write_text(markdown(result), encoding="utf-8")
        tmp.replace(md)
    except OSError as exc:
        raise StorageError(f"cannot write the report in {out_dir}: {exc.strerror or exc}") from exc
    written = [js, md]
    if rocs:
        written.append(
            plot_roc_curves(rocs, out_dir / "quantization_roc.png", "LFW dev ROC per variant")
        )
    return written


def run_report(
    art_dir: Path,
    out_dir: Path,
    *,
    data_root: Path,
    cache_dir: Path | None = None,
    embedder: bool = True,
    detector: bool = True,
    detector_images: int = 60,
    runs: int = 50,
    threads: int = 2,
    log: Log = print,
) -> tuple[dict[str, Any], list[Path]]:
    artifacts = load_artifacts(art_dir)
    result: dict[str, Any] = {
        "artifacts_dir": str(art_dir),
        "goals": GOALS_BY_MODEL,
        "notes": {
            "threads": threads,
            "timing_runs": runs,
            "detector_images_per_set": detector_images,
        },
    }
    rocs: dict[str, Any] = {}
    if embedder:
        cache = (cache_dir / "lfw_dev_aligned.npz") if cache_dir else None
        rows, meta = embedder_report(
            embedder_variants(art_dir, artifacts),
            data_root / "lfw",
            cache=cache,
            runs=runs,
            threads=threads,
            log=log,
        )
        rocs = meta.pop("rocs")
        result["embedder"] = rows
        result["notes"].update(meta)
    if detector:
        configs = detector_variants(art_dir, artifacts)
        result["detector"] = detector_report(
            configs, data_root, max_images=detector_images, log=log
        )
    return result, write_report(result, rocs, out_dir)
