"""Liveness benchmark: ms per face (float and INT8 MiniFASNet pair) and what liveness adds to
the door's frame -> decision.

1. Per face: both networks at batch 1 on real context patches, including the crop and resize
   (``LivenessChecker.score``), median over ``--runs``.
2. Door: 640x480 frames with one real LFW face, the real detector, embedder, gallery and
   decision policy; frames alternate between an identifier without liveness and one with
   each liveness pair, in one process (the dev VM's speed drifts, so only side-by-side
   differences mean something): "+ paired" is the median over frames of (this pair's
   latency - the latency without liveness on the same frame). Speed is measured, never
   asserted.

    python bench/bench_liveness.py [--int8 DIR] [--runs 200] [--frames 60] [--out JSON]

``--int8 DIR``: the output of ``edgeface quantize build --what liveness --out DIR`` (its INT8
ONNX and INT8 TFLite pairs are timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = SHARED / "models" / "minifasnet" / "samples" / "image_T1.jpg"
LFW = SHARED / "data" / "lfw" / "images"


def canvas(face: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    """``face`` (an LFW photo) in the middle of a grey 640x480 frame, as a door camera sees it."""
    img = np.full((h, w, 3), 110, np.uint8)
    y, x = (h - face.shape[0]) // 2, (w - face.shape[1]) // 2
    img[y : y + face.shape[0], x : x + face.shape[1]] = face
    return img


def main(argv: list[str] | None = None) -> int:
    from edgeface.blas_threads import use_one_blas_thread

    use_one_blas_thread()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--int8", type=Path, help="artifacts dir with minifasnet-*-int8.onnx")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--frames", type=int, default=60, help="door frames per variant")
    ap.add_argument("--threads", type=int, default=1, help="liveness inference threads")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="also time each pair with its two networks side by side (-par rows)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_liveness.json")
    args = ap.parse_args(argv)

    from edgeface.detector import DetectorConfig
    from edgeface.door.config import PolicyConfig
    from edgeface.door.pipeline_identifier import PipelineIdentifier
    from edgeface.door.policy import DecisionPolicy
    from edgeface.gallery.store import Gallery, ModelRef, Template
    from edgeface.imaging import load_image
    from edgeface.liveness import LivenessChecker, LivenessConfig
    from edgeface.recognition import FacePipeline, PipelineConfig

    variants: dict[str, LivenessConfig] = {
        "float": LivenessConfig(threshold=0.5, session_options={"threads": args.threads})
    }
    nets = ("minifasnet-v2", "minifasnet-v1se")
    if args.int8:
        for label, suffix, backend in (("int8", "int8.onnx", "onnxruntime"),
                                       ("tflite-int8", "int8.tflite", "litert")):  # fmt: skip
            paths = tuple(str(args.int8 / f"{m}-{suffix}") for m in nets)
            if all(Path(p).is_file() for p in paths):
                opts = {"threads": args.threads}
                variants[label] = LivenessConfig(
                    paths=paths, backend=backend, threshold=0.5, session_options=opts
                )
    if args.parallel:
        variants.update({f"{k}-par": replace(v, parallel=True) for k, v in variants.items()})
    checkers = {k: LivenessChecker.from_config(v) for k, v in variants.items()}

    # 1. ms per face
    pipeline = FacePipeline.from_config(PipelineConfig(detector=DetectorConfig(min_face_size=64)))
    import cv2

    # cv2.imread applies the sample's EXIF rotation (load_image does not): an upright face
    image = np.ascontiguousarray(cv2.imread(str(SAMPLE))[:, :, ::-1])
    face = pipeline.best_face(image).face  # type: ignore[union-attr]
    per_face: dict[str, float] = {}
    for name, ck in checkers.items():
        for _ in range(10):
            ck.score(image, face)
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            ck.score(image, face)
            times.append(time.perf_counter() - t)
        per_face[name] = 1000 * statistics.median(times)

    # 2. the door's frame -> decision, alternating identifiers frame by frame
    model = ModelRef.of(pipeline.embedder)
    gallery = Gallery(model=model)
    people = [p for p in sorted(LFW.iterdir()) if len(list(p.glob("*.jpg"))) >= 4][:20]
    for person in people:
        r = pipeline.best_face(load_image(sorted(person.glob("*.jpg"))[0]))
        if r is not None:
            gallery.add_identity(person.name, [Template(r.embedding, float(r.face.score), model)])
    frames = [canvas(load_image(p)) for p in sorted(people[0].glob("*.jpg"))[1:4]]

    def identifier(ck: LivenessChecker | None) -> PipelineIdentifier:
        door = FacePipeline(pipeline.detector, pipeline.embedder, min_face_size=80)
        return PipelineIdentifier(door, gallery=gallery, threshold=0.35, liveness=ck)

    idents = {"none": identifier(None), **{k: identifier(ck) for k, ck in checkers.items()}}
    policies = {k: DecisionPolicy(PolicyConfig(), require_liveness=k != "none") for k in idents}
    lat: dict[str, list[float]] = {k: [] for k in idents}
    for i in range(args.frames):
        frame = frames[i % len(frames)]
        for k, ident in idents.items():
            t = time.perf_counter()
            policies[k].observe(ident.identify(frame), now=float(i))
            lat[k].append(1000 * (time.perf_counter() - t))
    door = {k: statistics.median(v) for k, v in lat.items()}
    # paired: the same frame, a few ms apart, with and without liveness; the median of those
    # differences drifts less with the VM's speed than the difference of two medians
    paired = {k: statistics.median(a - b for a, b in zip(lat[k], lat["none"], strict=True))
              for k in checkers}  # fmt: skip
    live_stage = {k: 1000 * ident.timings["liveness"] / max(1, ident.counts["liveness"])
                  for k, ident in idents.items() if k != "none"}  # fmt: skip

    print(f"{'variant':<12} {'ms/face':>8} {'door ms/frame':>14} {'+ vs none':>10} "
          f"{'+ paired':>9} {'stage':>7}")  # fmt: skip
    print(f"{'none':<12} {'-':>8} {door['none']:>14.2f} {'-':>10} {'-':>9} {'-':>7}")
    for k in checkers:
        print(f"{k:<12} {per_face[k]:>8.2f} {door[k]:>14.2f} {door[k] - door['none']:>+10.2f} "
              f"{paired[k]:>+9.2f} {live_stage[k]:>7.2f}")  # fmt: skip
    result = {"ms_per_face": per_face, "door_frame_to_decision_median_ms": door,
              "door_added_by_liveness_paired_median_ms": paired,
              "door_liveness_stage_mean_ms": live_stage, "frames": args.frames,
              "runs": args.runs, "threads": args.threads}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
