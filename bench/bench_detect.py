"""Face-detection speed: NumPy MTCNN vs YuNet (cv2.FaceDetectorYN) vs the ``mtcnn`` package.

Why this shape: the door unit sees camera frames, not LFW crops, so every detector gets the
same real photos (the dlib example photos from ``../shared/data``) scaled to fill and
centre-cropped to 640x480 and 1280x720, and is timed per call on those frames. Each
(detector, frame size, min face) cell gets ``--warmup`` untimed calls (default: one pass
over the frames), then ``--repeats`` timed calls cycling through the frames; the table
shows the median (and p90) in ms.

* ``numpy``  : edgeface.detector.MTCNNDetector (the NumPy cascade), RGB input.
* ``yunet``  : cv2.FaceDetectorYN with the manifest's ``yunet`` model, BGR input (OpenCV's
  convention), score 0.9 / NMS 0.3 (OpenCV's defaults). YuNet has no min-face setting, so
  its time does not depend on it; the row is repeated per min face for easy reading.
* ``mtcnn-tf``: the PyPI ``mtcnn`` package (TensorFlow) when importable, RGB input;
  otherwise the row is skipped with a note. mtcnn 1.0.0 finds nothing for a min face above
  20 px (a pyramid bug, see :func:`make_mtcnn_tf`); for 40 px it gets the frame scaled
  by 20/40 and min face 20, which is the same pyramid, resize included in the time.

Speed is never asserted anywhere: numbers depend on the machine and on what else runs on it.

    python bench/bench_detect.py                      # default: ~1-2 minutes on 2 cores
    python bench/bench_detect.py --repeats 30 --out out/bench_detect.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeface.blas_threads import use_one_blas_thread

use_one_blas_thread()  # as the edgeface command does, before numpy loads (see that module)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "out" / "bench_detect.json"

Detect = Callable[[np.ndarray], int]  # takes the frame, returns the number of faces


def fill_crop(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale so the photo covers ``width x height``, then centre-crop (no black bars: a camera
    frame is image content everywhere)."""
    h, w = img.shape[:2]
    s = max(width / w, height / h)
    nw, nh = max(width, round(w * s)), max(height, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    big = cv2.resize(img, (nw, nh), interpolation=interp)
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width])


def load_frames(data: Path, sizes: list[tuple[int, int]], n: int) -> tuple[list[str], dict]:
    from edgeface.imaging import load_image

    files = sorted((data / "detection" / "dlib_faces").glob("*.jpg"))[:n]
    if not files:
        raise SystemExit(f"bench_detect: no photos in {data / 'detection' / 'dlib_faces'}")
    photos = [load_image(f) for f in files]
    frames = {wh: [fill_crop(p, *wh) for p in photos] for wh in sizes}
    return [f.relative_to(data).as_posix() for f in files], frames


def make_numpy(min_face: int) -> Detect:
    from edgeface.detector import DetectorConfig, MTCNNDetector

    det = MTCNNDetector(DetectorConfig(min_face_size=min_face))
    return lambda rgb: len(det.detect(rgb))


def make_yunet(width: int, height: int) -> Detect:
    from edgeface.modelstore import resolve_model

    model = str(resolve_model("yunet"))
    det = cv2.FaceDetectorYN.create(model, "", (width, height), 0.9, 0.3, 5000)

    def run(rgb: np.ndarray) -> int:
        # colour conversion is part of the cost a caller holding RGB pays
        _, faces = det.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return 0 if faces is None else len(faces)

    return run


_TF_MTCNN: Any = None


#: the one min-face size at which mtcnn 1.0.0 builds a valid pyramid (see make_mtcnn_tf)
MTCNN_TF_NATIVE_MIN_FACE = 20


def make_mtcnn_tf(min_face: int) -> Detect:
    """The reference package, working around its pyramid bug for min face above 20 px.

    mtcnn 1.0.0 (``utils/images.py: build_scale_pyramid``) counts pyramid levels from the
    image size alone, ignoring ``min_face_size``; for a min face above ~20 px its last levels
    fall below P-Net's 12 px input, TensorFlow raises a shape error inside P-Net and the
    package returns *no faces at all*, quickly (measured on a dlib photo: 6 faces at 20 px,
    0 at 24, 30, 40 and 60 px).
    Detecting faces >= ``min_face`` px in an image is the same pyramid as detecting faces
    >= 20 px in the image scaled by ``20 / min_face``, so we time that: the resize is inside
    the timed call, and the face counts in the table show the results are real.
    """
    global _TF_MTCNN
    if _TF_MTCNN is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mtcnn import MTCNN

        _TF_MTCNN = MTCNN(device="CPU:0")
    det = _TF_MTCNN
    native = MTCNN_TF_NATIVE_MIN_FACE
    if min_face == native:
        return lambda rgb: len(det.detect_faces(rgb, min_face_size=native))
    f = native / min_face

    def run(rgb: np.ndarray) -> int:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        return len(det.detect_faces(small, min_face_size=native))

    return run


def mtcnn_tf_available() -> str | None:
    """None when the package imports, else why not."""
    try:
        import mtcnn  # noqa: F401
        import tensorflow  # noqa: F401
    except Exception as exc:  # ImportError, or TF failing to load its native library
        return f"mtcnn package not usable ({type(exc).__name__}: {exc})"
    return None


def time_cell(detect: Detect, frames: list[np.ndarray], warmup: int, repeats: int) -> dict:
    for i in range(warmup):
        detect(frames[i % len(frames)])
    times, faces = [], []
    for i in range(repeats):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        n = detect(f)
        times.append((time.perf_counter() - t0) * 1000.0)
        faces.append(n)
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else times * 9
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(q[-1], 2),
        "min_ms": round(min(times), 2),
        "mean_faces": round(float(np.mean(faces)), 2),
        "runs": repeats,
    }


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        w, _, h = part.strip().partition("x")
        out.append((int(w), int(h)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--min-faces", default="20,40")
    ap.add_argument("--detectors", default="numpy,yunet,mtcnn-tf")
    ap.add_argument("--frames", type=int, default=8, help="distinct photos to cycle through")
    ap.add_argument(
        "--warmup",
        type=int,
        help="untimed calls per cell (default: one pass over the frames, so that first-call "
        "costs such as TensorFlow retracing for a new input shape are not timed)",
    )
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    sizes = _parse_sizes(args.sizes)
    min_faces = [int(v) for v in args.min_faces.split(",")]
    detectors = [d.strip() for d in args.detectors.split(",")]
    sources, frames = load_frames(args.data, sizes, args.frames)
    if args.warmup is None:
        args.warmup = len(sources)
    notes: list[str] = []
    if "mtcnn-tf" in detectors and any(mf != MTCNN_TF_NATIVE_MIN_FACE for mf in min_faces):
        notes.append(
            "mtcnn-tf at min face != 20: frame pre-scaled by 20/min_face and run at min face 20 "
            "(mtcnn 1.0.0 returns no faces otherwise: pyramid bug in build_scale_pyramid)"
        )
    if "mtcnn-tf" in detectors:
        why = mtcnn_tf_available()
        if why:
            notes.append(f"mtcnn-tf skipped: {why}")
            detectors.remove("mtcnn-tf")

    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for name in detectors:
        for wh in sizes:
            yunet_cell: dict | None = None
            for mf in min_faces:
                print(f"  {name} {wh[0]}x{wh[1]} min {mf} ...", file=sys.stderr, flush=True)
                if name == "yunet":
                    if yunet_cell is None:  # no min-face setting: time once per size
                        yunet_cell = time_cell(
                            make_yunet(*wh), frames[wh], args.warmup, args.repeats
                        )
                    cell = dict(yunet_cell)
                elif name == "numpy":
                    cell = time_cell(make_numpy(mf), frames[wh], args.warmup, args.repeats)
                elif name == "mtcnn-tf":
                    cell = time_cell(make_mtcnn_tf(mf), frames[wh], args.warmup, args.repeats)
                else:
                    raise SystemExit(f"bench_detect: unknown detector {name!r}")
                results.append(
                    {"detector": name, "size": f"{wh[0]}x{wh[1]}", "min_face": mf, **cell}
                )
    elapsed = time.perf_counter() - t_start

    ref = {
        (r["size"], r["min_face"]): r["median_ms"] for r in results if r["detector"] == "mtcnn-tf"
    }
    for r in results:
        base = ref.get((r["size"], r["min_face"]))
        r["speedup_vs_mtcnn_tf"] = round(base / r["median_ms"], 2) if base else None

    print(
        f"\n{'detector':<9} {'size':>9} {'min':>4} {'median ms':>10} {'p90 ms':>8} "
        f"{'faces':>6} {'x mtcnn-tf':>10}"
    )
    for r in results:
        sp = f"{r['speedup_vs_mtcnn_tf']:.2f}" if r["speedup_vs_mtcnn_tf"] else "-"
        print(
            f"{r['detector']:<9} {r['size']:>9} {r['min_face']:>4} {r['median_ms']:>10.1f} "
            f"{r['p90_ms']:>8.1f} {r['mean_faces']:>6.1f} {sp:>10}"
        )
    for n in notes:
        print(f"note: {n}")

    report = {
        "benchmark": "bench/bench_detect.py",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "cv2_threads": cv2.getNumThreads(),
            "thread_env": {
                k: os.environ[k] for k in sorted(os.environ) if k.endswith("_NUM_THREADS")
            },
        },
        "frames": sources,
        "frame_prep": "fill + centre crop to each size (INTER_AREA down / INTER_LINEAR up)",
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
        "notes": notes,
        "seconds": round(elapsed, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
