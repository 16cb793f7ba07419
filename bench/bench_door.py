"""Door loop benchmark: frames per second end to end with a per-stage breakdown and CPU use.

Frames are 640x480 with one real LFW face (a 250x250 LFW photo placed on a grey canvas),
replayed through the real DoorDaemon (policy, dry-run actuator, audit log with fsync) with the
real pipeline and an encrypted-gallery matcher of enrolled LFW people. Prints a table and
writes JSON. Speed is measured, never asserted.

    python bench/bench_door.py --frames 200 [--embedder-model mobilefacenet-dyn]
        [--embedder-path INT8.onnx] [--out out/bench_door.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def canvas(face: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    img = np.full((h, w, 3), 110, np.uint8)
    y, x = (h - face.shape[0]) // 2, (w - face.shape[1]) // 2
    img[y : y + face.shape[0], x : x + face.shape[1]] = face
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--min-face-size", type=float, default=80.0)
    ap.add_argument("--people", type=int, default=50, help="enrolled identities")
    ap.add_argument(
        "--embedder-model", default=None, help="manifest model (default: the default embedder)"
    )
    ap.add_argument("--embedder-path", default=None, help="a variant of it, e.g. its INT8 file")
    ap.add_argument("--detector-backend", default="numpy")
    ap.add_argument("--out", default=str(REPO / "out" / "bench_door.json"))
    args = ap.parse_args(argv)

    from edgeface.camera.base import EndOfStream, FrameSource
    from edgeface.detector import DetectorConfig
    from edgeface.door.actuators import DryRunActuator, FailSecureActuator
    from edgeface.door.audit import AuditLog
    from edgeface.door.config import parse_config
    from edgeface.door.daemon import DoorDaemon
    from edgeface.door.pipeline_identifier import PipelineIdentifier
    from edgeface.embedder import EmbedderConfig
    from edgeface.gallery.store import Gallery, ModelRef, Template
    from edgeface.imaging import load_image
    from edgeface.recognition import FacePipeline, PipelineConfig

    t_load = time.perf_counter()
    pipeline = FacePipeline.from_config(
        PipelineConfig(
            detector=DetectorConfig(
                min_face_size=max(12.0, 0.8 * args.min_face_size), backend=args.detector_backend
            ),
            embedder=EmbedderConfig(
                **({"model": args.embedder_model} if args.embedder_model else {}),
                path=args.embedder_path,
            ),
        )
    )
    load_s = time.perf_counter() - t_load
    model = ModelRef.of(pipeline.embedder)
    gallery = Gallery(model=model)
    people = [p for p in sorted(LFW.iterdir()) if len(list(p.glob("*.jpg"))) >= 4]
    probe_person = people[0]
    for person in people[: args.people]:
        r = pipeline.best_face(load_image(sorted(person.glob("*.jpg"))[0]))
        if r is not None:
            gallery.add_identity(person.name, [Template(r.embedding, float(r.face.score), model)])
    probes = [canvas(load_image(p)) for p in sorted(probe_person.glob("*.jpg"))[1:4]]
    try:
        threshold = pipeline.threshold(far=1e-3)
    except Exception:
        threshold = 0.5  # no calibration shipped yet: the decision threshold does not change speed

    class Replay(FrameSource):
        kind = "bench"
        live = False

        def _open(self) -> None: ...

        def _read(self) -> np.ndarray:
            if self._index >= args.frames:
                raise EndOfStream("done")
            return probes[self._index % len(probes)]

    ident = PipelineIdentifier(
        detector=pipeline.detector,
        embedder=pipeline.embedder,
        gallery=gallery,
        threshold=threshold,
        min_face_size=args.min_face_size,
    )
    per_frame: list[float] = []
    inner = ident.identify

    def timed(rgb: np.ndarray):
        t = time.perf_counter()
        obs = inner(rgb)
        per_frame.append(time.perf_counter() - t)
        return obs

    ident.identify = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(
            {
                "camera": {"kind": "images", "path": tmp},
                "actuator": {"kind": "dryrun"},
                "audit": {"path": f"{tmp}/audit.jsonl"},
                "recognition": {"max_fps": 1000.0},
                "policy": {"min_face_size": args.min_face_size, "unlock_s": 1.0},
            }
        )
        daemon = DoorDaemon(
            cfg,
            source=Replay(),
            identifier=ident,
            actuator=FailSecureActuator(DryRunActuator()),
            audit=AuditLog(f"{tmp}/audit.jsonl"),
        )
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        daemon.run()
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    n = daemon.stats.processed
    stages = {k: 1000 * v / max(1, ident.counts[k]) for k, v in ident.timings.items()}
    stages["decide+audit"] = 1000 * daemon.stats.stage_s["decide"] / max(1, n)
    stages["read"] = 1000 * daemon.stats.stage_s["read"] / max(1, daemon.stats.frames)
    lat = sorted(1000 * x for x in per_frame)
    result = {
        "frames": n,
        "frame_size": "640x480",
        "fps": n / wall,
        "latency_ms": {
            "median": statistics.median(lat),
            "p90": lat[int(0.9 * (len(lat) - 1))],
            "max": lat[-1],
        },
        "stage_ms_mean": stages,
        "cpu_cores_used": cpu / wall,
        "cpu_count": os.cpu_count(),
        "unlocks": daemon.stats.unlocks,
        "model_load_s": load_s,
        "embedder_model": args.embedder_model or EmbedderConfig().model,
        "embedder": args.embedder_path or "float32 ONNX of the manifest",
        "detector_backend": args.detector_backend,
        "min_face_size": args.min_face_size,
        "gallery_identities": len(gallery),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
    }
    print(
        f"door loop: {n} frames 640x480, {result['fps']:.1f} fps, "
        f"CPU {result['cpu_cores_used']:.2f} of {os.cpu_count()} cores"
    )
    print(f"{'stage':<14}{'mean ms':>10}")
    for k, v in stages.items():
        print(f"{k:<14}{v:>10.2f}")
    lm = result["latency_ms"]
    print(f"{'frame->decision':<14} median {lm['median']:.1f} ms, p90 {lm['p90']:.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
