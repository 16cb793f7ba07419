"""Is INT8 MTCNN faster than float? Per backend, per net, and for the whole cascade.

For each backend (ONNX Runtime, LiteRT) and precision (fp32, int8) from an artifact folder
made by ``edgeface quantize build --what mtcnn``: each net on a fixed input (P-Net on a
320x240 pyramid level, R-Net on 64 crops, O-Net on 8 crops: the sizes a 640x480 frame gives
at min face 40), and the whole cascade on the 8 first dlib photos scaled to 640x480. The NumPy
float cascade is the reference row. One thread per session and one process (no helper), so
the rows compare the kernels, not the parallelism. Reports the median of wall time and of the
thread's CPU time (``time.thread_time``, less sensitive to a loaded machine).

    python bench/bench_mtcnn_int8.py --artifacts out/quant [--repeats 30] [--out OUT.json]
"""

from __future__ import annotations

from edgeface.blas_threads import use_one_blas_thread

use_one_blas_thread()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgeface.backends import format_backends  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DLIB = REPO.parent / "shared" / "data" / "detection" / "dlib_faces"
BACKENDS = format_backends()  # artifact format -> backend, from the registry
SHAPES = {"pnet": (1, 240, 320, 3), "rnet": (64, 24, 24, 3), "onet": (8, 48, 48, 3)}


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (first-run allocations, XNNPACK packing)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def frames() -> list[np.ndarray]:
    from edgeface.imaging import load_image

    out = []
    for p in sorted(DLIB.glob("*.jpg"))[:8]:
        img = load_image(p)
        h, w = img.shape[:2]
        s = max(640 / w, 480 / h)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        y, x = (img.shape[0] - 480) // 2, (img.shape[1] - 640) // 2
        out.append(np.ascontiguousarray(img[y : y + 480, x : x + 640]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, help="folder made by edgeface quantize build")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--min-face", type=float, default=40.0)
    ap.add_argument("--out", default=str(REPO / "out" / "bench_mtcnn_int8.json"))
    args = ap.parse_args(argv)

    from edgeface.backends import open_session
    from edgeface.detector import DetectorConfig, MTCNNDetector

    art = Path(args.artifacts)
    rng = np.random.default_rng(0)
    inputs = {n: rng.uniform(-1, 1, s).astype(np.float32) for n, s in SHAPES.items()}
    images = frames()
    rows = []
    variants = [("numpy", "fp32", None)] + [
        (fmt, prec, art) for fmt in BACKENDS for prec in ("fp32", "int8")
    ]
    for fmt, prec, folder in variants:
        row: dict[str, object] = {"backend": BACKENDS.get(fmt, "numpy"), "precision": prec}
        if folder is None:
            cfg = DetectorConfig(min_face_size=args.min_face, workers=1)
        else:
            models = {n: str(folder / f"mtcnn-{n}-{prec}.{fmt}") for n in SHAPES}
            if not all(Path(m).is_file() for m in models.values()):
                print(f"skipping {fmt} {prec}: missing files in {folder}")
                continue
            opts = {"threads": 1}
            cfg = DetectorConfig(
                min_face_size=args.min_face,
                backend=BACKENDS[fmt],
                models=models,
                session_options=opts,
                workers=1,
            )
            for net, x in inputs.items():
                session = open_session(models[net], BACKENDS[fmt], **opts)
                xin = x.transpose(0, 3, 1, 2) if session.info.input_layout == "NCHW" else x
                if session.info.fixed_batch:
                    xin = xin[: session.info.fixed_batch]
                row[f"{net}_ms"], row[f"{net}_cpu_ms"] = timed(
                    lambda s=session, v=xin: s.run(v), args.repeats
                )
        det = MTCNNDetector(cfg)
        k = iter(range(10**9))
        row["frame_ms"], row["frame_cpu_ms"] = timed(
            lambda d=det, it=k: d.detect(images[next(it) % len(images)]), args.repeats
        )
        rows.append(row)
    print(f"MTCNN per net and per 640x480 frame (min face {args.min_face:g}), one thread, medians")
    print(
        f"{'backend':<12}{'prec':<6}"
        + "".join(f"{n + ' ms (cpu)':>18}" for n in SHAPES)
        + f"{'frame ms (cpu)':>20}"
    )
    for r in rows:
        cells = "".join(
            f"{r[n + '_ms']:>9.2f} ({r[n + '_cpu_ms']:>5.2f})" if n + "_ms" in r else f"{'-':>18}"
            for n in SHAPES
        )
        print(
            f"{r['backend']:<12}{r['precision']:<6}{cells}"
            f"{r['frame_ms']:>11.2f} ({r['frame_cpu_ms']:>6.2f})"
        )
    result = {
        "rows": rows,
        "inputs": {n: list(s) for n, s in SHAPES.items()},
        "repeats": args.repeats,
        "min_face": args.min_face,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
