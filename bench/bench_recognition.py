"""Recognition speed: ms per face at batch 1 and 8, and the whole image -> embedding time.

Frames are real LFW photos (250x250) and the same photos placed in a 640x480 frame, so the
detector sees what a door camera would give it. Per stage: detect, align, embed. The
embedder rows cover every backend x model file given with ``--variant NAME=BACKEND:PATH``
(the float ONNX model is always included), so INT8 artifacts from ``edgeface quantize`` can
be compared on the same crops.

    python bench/bench_recognition.py
    python bench/bench_recognition.py --variant int8=onnxruntime:out/q/mobilefacenet_int8.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeface.aligner import align_face
from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.imaging import load_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def in_frame(img: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    frame = np.full((size[1], size[0], 3), 60, np.uint8)
    y, x = (size[1] - img.shape[0]) // 2, (size[0] - img.shape[1]) // 2
    frame[y : y + img.shape[0], x : x + img.shape[1]] = img
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=Path, default=DEFAULT_LFW)
    ap.add_argument("--photos", type=int, default=12, help="number of LFW photos used")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=BACKEND:PATH")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_recognition.json")
    args = ap.parse_args()

    paths = sorted(args.images.glob("*/*_0001.jpg"))[: args.photos]
    photos = [load_image(p) for p in paths]
    detector = MTCNNDetector(DetectorConfig(min_face_size=40))
    faces = [detector.detect(p)[0] for p in photos]
    crops = np.stack([align_face(p, f.landmarks).crop for p, f in zip(photos, faces, strict=True)])

    variants = {"float-onnx": EmbedderConfig()}
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        backend, _, path = rest.partition(":")
        variants[name] = EmbedderConfig(backend=backend, path=path)
    rows = []
    for name, cfg in variants.items():
        emb = Embedder.from_config(cfg)
        size = os.path.getsize(emb.session.info.path) if emb.session.info.path else None
        b1 = timed(lambda e=emb: e.embed(crops[:1]), args.repeats)
        b8 = timed(lambda e=emb: e.embed(crops[:8]), args.repeats)
        rows.append({"variant": name, "backend": cfg.backend, "bytes": size,
                     "ms_per_face_b1": statistics.median(b1),
                     "ms_per_face_b8": statistics.median(b8) / 8})  # fmt: skip

    float_embedder = Embedder.from_config()
    frames = [in_frame(p) for p in photos]
    stage = {"detect": [], "align": [], "embed": [], "total": []}
    for _ in range(max(1, args.repeats // len(frames))):
        for frame in frames:
            t0 = time.perf_counter()
            face = detector.detect(frame)[0]
            t1 = time.perf_counter()
            crop = align_face(frame, face.landmarks).crop
            t2 = time.perf_counter()
            float_embedder.embed(crop)
            t3 = time.perf_counter()
            for k, v in zip(stage, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                stage[k].append(v * 1000)
    pipeline = {k: statistics.median(v) for k, v in stage.items()}

    print(f"{'variant':<14} {'backend':<12} {'size':>10} {'ms/face b1':>11} {'ms/face b8':>11}")
    for r in rows:
        size = f"{r['bytes'] / 1e6:.2f} MB" if r["bytes"] else "-"
        print(
            f"{r['variant']:<14} {r['backend']:<12} {size:>10} "
            f"{r['ms_per_face_b1']:>11.2f} {r['ms_per_face_b8']:>11.2f}"
        )
    print(
        "\n640x480 frame -> embedding (median ms): "
        + "  ".join(f"{k} {v:.1f}" for k, v in pipeline.items())
    )
    report = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")},
              "embedder": rows, "frame_640x480_min_face_40": pipeline}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
