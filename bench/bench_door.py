"""Door benchmark: frame -> decision with and without face tracking, the door process tree's
peak memory, and the time from ``edgeface door`` start to READY=1.

1. Loop: a replay where one person walks up to the camera and stays (640x480 frames, an LFW
   photo of an enrolled person growing from 0.6x to 1.5x while moving to the centre, then
   standing with small movements), through the real DoorDaemon (policy, dry-run actuator,
   audit log with fsync) with the real pipeline and an encrypted-gallery matcher of enrolled
   LFW people. The same frames run with the full cascade on every frame and with tracking
   (``recognition.full_detect_every``), alternating rounds in one process.
2. Start-up and memory: the real ``edgeface door`` command on the same replay (a file relay,
   an encrypted gallery file, a NOTIFY_SOCKET listener like systemd's): seconds to READY=1,
   then the peak RSS of its process tree (main + detector helpers) while it runs.

Like the ``edgeface`` command, it runs numpy's BLAS with one thread (set before numpy loads).
Prints tables and writes JSON. Speed is measured, never asserted.

    python bench/bench_door.py [--frames 120] [--embedder-model mobilefacenet-dyn]
        [--embedder-path INT8.onnx] [--liveness-paths V2,V1SE] [--out OUT.json]
"""

from __future__ import annotations

from edgeface.blas_threads import use_one_blas_thread

use_one_blas_thread()  # what the daemon runs with (the edgeface command sets it first thing)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
W, H = 640, 480


def walk_up(photo: np.ndarray, frames: int, approach: int = 15) -> list[np.ndarray]:
    """``approach`` frames walking up (growing, moving to the centre), then standing."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(frames):
        t = min(k, approach) / approach
        scale = 0.6 * (1.5 / 0.6) ** t
        cx = 160 + 160 * t + (rng.normal(0, 2) if k > approach else 0)
        cy = 240 + (rng.normal(0, 1.5) if k > approach else 0)
        p = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = p.shape[:2]
        x, y = round(cx - w / 2), round(cy - h / 2)
        canvas = np.full((H, W, 3), 110, np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        canvas[y0:y1, x0:x1] = p[y0 - y : y1 - y, x0 - x : x1 - x]
        out.append(canvas)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_loop(frames, detector, pipeline, gallery, threshold, min_face, tmp):
    """One pass of the replay through the real daemon; per-frame latencies and modes."""
    from edgeface.camera.base import EndOfStream, FrameSource
    from edgeface.door.actuators import DryRunActuator, FailSecureActuator
    from edgeface.door.audit import AuditLog
    from edgeface.door.config import parse_config
    from edgeface.door.daemon import DoorDaemon
    from edgeface.door.pipeline_identifier import PipelineIdentifier

    sys.path.insert(0, str(REPO / "tests"))  # the door's test doubles live with the tests
    from doubles import FakeClock, ManualTimer

    from edgeface.recognition import FacePipeline

    # the door's clock: a 10 fps camera (0.1 s a frame), whatever the frames cost here, so
    # that both modes see the same policy timing and their decisions can be compared
    clock = FakeClock()
    timers = ManualTimer(clock)

    class Replay(FrameSource):
        kind = "bench"
        live = False

        def _open(self) -> None: ...

        def _read(self) -> np.ndarray:
            if self._index >= len(frames):
                raise EndOfStream("done")
            clock.advance(0.1)
            timers.fire_due()
            return frames[self._index]

    ident = PipelineIdentifier(
        FacePipeline(detector, pipeline.embedder, min_face_size=min_face),
        gallery=gallery,
        threshold=threshold,
    )
    lat: list[float] = []
    modes: list[str] = []
    who: list[str | None] = []
    inner = ident.identify

    def timed(rgb: np.ndarray):
        t = time.perf_counter()
        obs = inner(rgb)
        lat.append(1000 * (time.perf_counter() - t))
        modes.append(getattr(detector, "last_mode", "full"))
        who.append(obs.identity_id)
        return obs

    ident.identify = timed  # type: ignore[method-assign]
    audit = Path(tmp) / f"audit-{time.monotonic_ns()}.jsonl"
    cfg = parse_config(
        {
            "camera": {"kind": "images", "path": tmp},
            "actuator": {"kind": "dryrun"},
            "audit": {"path": str(audit)},
            "recognition": {"max_fps": 10.0},
            "policy": {"min_face_size": min_face, "unlock_s": 1.0},
            # the replay is of an LFW press photo, which the liveness check rightly refuses
            # (and the lockout would then skip frames); bench/bench_liveness.py times liveness
            "liveness": {"required": False},
        }
    )
    daemon = DoorDaemon(
        cfg,
        source=Replay(clock=clock),
        identifier=ident,
        actuator=FailSecureActuator(DryRunActuator(), timer_factory=timers.factory),
        audit=AuditLog(audit),
        clock=clock,
        sleep=clock.sleep,
    )
    t0 = time.perf_counter()
    daemon.run()
    wall = time.perf_counter() - t0
    stages = {k: 1000 * v / max(1, ident.counts[k]) for k, v in ident.timings.items()}
    return lat, modes, who, stages, daemon.stats.unlocks, wall


def loop_benchmark(args, pipeline, gallery, threshold, frames) -> dict:
    from edgeface.detector.tracking import TrackingConfig, TrackingDetector

    tracker = TrackingDetector(pipeline.detector, TrackingConfig(full_every=args.full_every))
    runs: dict[str, dict] = {
        m: {"lat": [], "modes": [], "who": [], "stages": [], "unlocks": [], "wall": 0.0}
        for m in ("full", "tracked")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):  # alternating, so both see the same machine load
            for name, det in (("full", pipeline.detector), ("tracked", tracker)):
                if name == "tracked":
                    tracker.reset()
                lat, modes, who, stages, unlocks, wall = run_loop(
                    frames, det, pipeline, gallery, threshold, args.min_face_size, tmp
                )
                r = runs[name]
                r["lat"] += lat
                r["modes"] += modes
                r["who"] += who
                r["stages"].append(stages)
                r["unlocks"].append(unlocks)
                r["wall"] += wall
    out: dict[str, dict] = {}
    for name, r in runs.items():
        lat = r["lat"]
        stages = {k: statistics.mean(s[k] for s in r["stages"]) for k in r["stages"][0]}
        by_mode = {
            m: median([x for x, mm in zip(lat, r["modes"], strict=True) if mm == m])
            for m in ("full", "tracked")
        }
        out[name] = {
            "frames": len(lat),
            "fps": len(lat) / r["wall"],
            "median_ms": median(lat),
            "mean_ms": statistics.mean(lat),
            "p90_ms": sorted(lat)[int(0.9 * (len(lat) - 1))],
            "median_ms_by_mode": by_mode,
            "frames_by_mode": {m: r["modes"].count(m) for m in ("full", "tracked")},
            "stage_ms_mean": stages,
            "unlocks_per_round": r["unlocks"],
            "frames_recognized": sum(w is not None for w in r["who"]),
        }
    out["same_identity_every_frame"] = runs["full"]["who"] == runs["tracked"]["who"]
    full = out["full"]["median_ms"]
    out["tracked_frame_vs_full"] = out["tracked"]["median_ms_by_mode"]["tracked"] / full
    out["tracking_mean_vs_full_mean"] = out["tracked"]["mean_ms"] / out["full"]["mean_ms"]
    return out


# -- start-up and memory of the real `edgeface door` process ---------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            found += [int(x) for x in f.read().split()]
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):  # it exited meanwhile
            todo += _children(p)
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used: start-up cost without the machine's load."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def door_setup(tmp: Path, args, pipeline, gallery_people, threshold, frames) -> Path:
    """A door.toml for the real daemon: the replay as image files, an encrypted gallery."""
    from edgeface.gallery import GalleryFile, create_key_file
    from edgeface.gallery.store import ModelRef, Template

    cam = tmp / "camera"
    cam.mkdir()
    for k, f in enumerate(frames):
        cv2.imwrite(str(cam / f"{k:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    key = tmp / "gallery.key"
    gf = GalleryFile(tmp / "gallery.efg", create_key_file(key))
    model = ModelRef.of(pipeline.embedder)
    gf.create(model=model)
    with gf.edit() as g:
        for name, (emb, score) in gallery_people.items():
            g.add_identity(name, [Template(emb, score, model)])
    live_lines = ""
    if args.liveness_paths:  # e.g. the INT8 TFLite pair; its calibration beside it or packaged
        files = ", ".join(f'"{p}"' for p in args.liveness_paths.split(","))
        live_lines = f"[liveness]\npaths = [{files}]"
    emb_line = f'embedder_path = "{args.embedder_path}"' if args.embedder_path else ""
    if args.embedder_model:
        emb_line += f'\nembedder_model = "{args.embedder_model}"'
    text = f"""
[camera]
kind = "images"
path = "{cam}"
loop = true
fps = 15
[recognition]
threshold = {threshold}
max_fps = 10
full_detect_every = {args.full_every}
detector_workers = {args.workers}
{emb_line}
[gallery]
path = "{tmp / "gallery.efg"}"
key_file = "{key}"
[policy]
min_face_size = {args.min_face_size}
unlock_s = 2
[actuator]
kind = "file"
path = "{tmp / "relay"}"
[audit]
path = "{tmp / "audit.jsonl"}"
[daemon]
watchdog = true
{live_lines}
"""
    (tmp / "door.toml").write_text(text)
    return tmp / "door.toml"


def startup_run(config: Path, run_s: float) -> dict:
    """Start ``edgeface door`` under a NOTIFY_SOCKET listener; READY time and tree memory."""
    with tempfile.TemporaryDirectory() as d:
        sock_path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(0.05)
        env = {**os.environ, "NOTIFY_SOCKET": sock_path}
        exe = Path(sys.executable).with_name("edgeface")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeface.cli.main"]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*cmd, "door", "--config", str(config), "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready_s = ready_cpu_s = None
        peak_rss = peak_pss = 0
        per_process: dict[int, int] = {}
        deadline = t0 + 120
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                    raise RuntimeError(f"edgeface door exited {proc.returncode}: {err}")
                try:
                    msg = sock.recv(4096).decode()
                except TimeoutError:
                    msg = ""
                if ready_s is None and "READY=1" in msg.split("\n"):
                    ready_s = time.monotonic() - t0
                    ready_cpu_s = _cpu_s(proc.pid)
                    deadline = time.monotonic() + run_s
                pids = _tree(proc.pid)
                peak_rss = max(peak_rss, sum(_status_kb(p, "VmRSS") for p in pids))
                peak_pss = max(peak_pss, sum(_pss_kb(p) for p in pids))
                for p in pids:
                    per_process[p] = max(per_process.get(p, 0), _status_kb(p, "VmHWM"))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            sock.close()
        if ready_s is None:
            raise RuntimeError("no READY=1 within 120 s")
        main_hwm = per_process.pop(proc.pid, 0)
        return {
            "ready_s": ready_s,
            "ready_cpu_s": ready_cpu_s,
            "tree_peak_rss_mb": peak_rss / 1024,
            "tree_peak_pss_mb": peak_pss / 1024,
            "main_hwm_mb": main_hwm / 1024,
            "helpers_hwm_mb": [v / 1024 for v in per_process.values()],
            "exit_code": proc.returncode,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames per replay pass")
    ap.add_argument("--rounds", type=int, default=2, help="passes of each mode, alternating")
    ap.add_argument("--min-face-size", type=float, default=80.0, help="policy.min_face_size")
    ap.add_argument("--full-every", type=int, default=3, help="recognition.full_detect_every")
    ap.add_argument("--people", type=int, default=50, help="enrolled identities")
    ap.add_argument(
        "--embedder-model", default=None, help="manifest model (default: the default embedder)"
    )
    ap.add_argument("--embedder-path", default=None, help="a variant of it, e.g. its INT8 file")
    ap.add_argument("--detector-backend", default="numpy")
    ap.add_argument(
        "--workers", type=int, default=None, help="recognition.detector_workers (door default)"
    )
    ap.add_argument(
        "--liveness-paths",
        metavar="V2,V1SE",
        help="the real door's [liveness] paths, e.g. Q/minifasnet-v2-int8.tflite,"
        "Q/minifasnet-v1se-int8.tflite (default: the manifest's float ONNX pair)",
    )
    ap.add_argument("--startups", type=int, default=3, help="runs of the real edgeface door")
    ap.add_argument("--run-s", type=float, default=6.0, help="seconds each runs after READY")
    ap.add_argument("--out", default=str(REPO / "out" / "bench_door.json"))
    args = ap.parse_args(argv)
    from edgeface.door.config import RecognitionConfig

    args.workers = args.workers or RecognitionConfig().detector_workers

    from edgeface.detector import DetectorConfig
    from edgeface.embedder import EmbedderConfig
    from edgeface.gallery.store import Gallery, ModelRef, Template
    from edgeface.imaging import load_image
    from edgeface.recognition import FacePipeline, PipelineConfig

    t_load = time.perf_counter()
    pipeline = FacePipeline.from_config(
        PipelineConfig(
            detector=DetectorConfig(
                min_face_size=max(12.0, 0.8 * args.min_face_size),
                backend=args.detector_backend,
                workers=args.workers,
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
    enrolled: dict[str, tuple[np.ndarray, float]] = {}
    people = [p for p in sorted(LFW.iterdir()) if len(list(p.glob("*.jpg"))) >= 4]
    for person in people[: args.people]:
        r = pipeline.best_face(load_image(sorted(person.glob("*.jpg"))[0]))
        if r is not None:
            enrolled[person.name] = (r.embedding, float(r.face.score))
            gallery.add_identity(person.name, [Template(r.embedding, float(r.face.score), model)])
    walker = load_image(sorted(people[0].glob("*.jpg"))[1])  # enrolled, another photo
    frames = walk_up(walker, args.frames)
    try:
        threshold = pipeline.threshold(far=1e-3)
    except Exception:
        threshold = 0.5  # no calibration shipped: the threshold does not change speed

    loop = loop_benchmark(args, pipeline, gallery, threshold, frames)
    pipeline.detector.close()
    starts = []
    if args.startups:
        with tempfile.TemporaryDirectory() as tmp:
            config = door_setup(Path(tmp), args, pipeline, enrolled, threshold, frames[:40])
            starts = [startup_run(config, args.run_s) for _ in range(args.startups)]

    result = {
        "replay": f"walk-up: {args.frames} frames 640x480, approach 15 frames then standing",
        "loop": loop,
        "startup": starts,
        "ready_s_median": median([s["ready_s"] for s in starts]),
        "tree_peak_rss_mb_max": max((s["tree_peak_rss_mb"] for s in starts), default=None),
        "model_load_s": load_s,
        "embedder_model": args.embedder_model or EmbedderConfig().model,
        "embedder": args.embedder_path or "float32 ONNX of the manifest",
        "door_liveness": args.liveness_paths or "float32 ONNX pair of the manifest",
        "detector_backend": args.detector_backend,
        "min_face_size": args.min_face_size,
        "full_detect_every": args.full_every,
        "detector_workers": args.workers,
        "gallery_identities": len(gallery),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
    }
    print(f"door loop, {result['replay']}, {args.rounds} rounds per mode, alternating")
    print(
        f"{'mode':<9}{'fps':>7}{'median':>9}{'p90':>8}{'full fr.':>10}{'tracked fr.':>13}"
        f"{'detect':>8}{'align':>7}{'embed':>7}{'match':>7}{'unlocks':>9}"
    )
    for name in ("full", "tracked"):
        r = loop[name]
        bm, st = r["median_ms_by_mode"], r["stage_ms_mean"]
        print(
            f"{name:<9}{r['fps']:>7.1f}{r['median_ms']:>9.2f}{r['p90_ms']:>8.2f}"
            f"{bm['full']:>10.2f}{bm['tracked']:>13.2f}{st['detect']:>8.2f}{st['align']:>7.2f}"
            f"{st['embed']:>7.2f}{st['match']:>7.2f}{r['unlocks_per_round']!s:>9}"
        )
    print(
        f"tracked frame / full-detection frame (medians): {loop['tracked_frame_vs_full']:.2f}; "
        f"mean over the replay: {loop['tracking_mean_vs_full_mean']:.2f}; recognized frames "
        f"full {loop['full']['frames_recognized']}, tracked {loop['tracked']['frames_recognized']}"
        f", same identity on every frame: {loop['same_identity_every_frame']}"
    )
    if starts:
        print(
            f"{'edgeface door':<14}{'READY s':>9}{'CPU s':>7}{'tree RSS MB':>13}{'tree PSS MB':>13}"
            f"{'main MB':>9}{'helpers MB':>12}"
        )
        for s in starts:
            helpers = "+".join(f"{h:.0f}" for h in s["helpers_hwm_mb"]) or "-"
            print(
                f"{'':<14}{s['ready_s']:>9.2f}{s['ready_cpu_s']:>7.2f}{s['tree_peak_rss_mb']:>13.1f}"
                f"{s['tree_peak_pss_mb']:>13.1f}{s['main_hwm_mb']:>9.1f}{helpers:>12}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
