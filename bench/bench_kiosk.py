"""Kiosk benchmark: preview frames per second while recognizing, time from a face appearing to
the verify result, strangers accepted, and the kiosk's memory, at 640x480.

The real kiosk runs in this process: engine (camera + recognition threads, k-of-n policy,
encrypted gallery, audit log with fsync) and the Starlette app served by uvicorn on 127.0.0.1.
The camera replays real LFW photos, each scaled into a 640x480 frame, paced at ``--camera-fps``.
A client thread reads the MJPEG preview over HTTP the whole time and counts the frames it
receives. Each latency trial shows an empty scene until the kiosk is idle, then a photo of an
enrolled person that was *not* used to enroll them, and times from the first frame with the
face leaving the camera to the "Welcome" result. The stranger phase replays people who are not
enrolled and counts any "Welcome". Speed is measured, never asserted.

    python bench/bench_kiosk.py [--trials 10] [--stranger-s 30] [--out out/bench_kiosk.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the edgeface command does
os.environ.setdefault("MKL_NUM_THREADS", "1")

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
W, H = 640, 480


def frame_of(path: Path) -> bytes:
    """An LFW photo scaled to 400x400 in the middle of a grey 640x480 frame (face ~160 px),
    kept as JPEG bytes and decoded on every read, as a camera's frames are: the benchmark
    holds no stack of raw frames that would inflate the kiosk's measured memory."""
    from edgeface.imaging import load_image

    img = cv2.resize(load_image(path), (400, 400), interpolation=cv2.INTER_LINEAR)
    out = np.full((H, W, 3), 110, np.uint8)
    y, x = (H - 400) // 2, (W - 400) // 2
    out[y : y + 400, x : x + 400] = img
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )
    assert ok
    return buf.tobytes()


def enroll(gallery: str, key: str, people: list[str], queue: Any) -> None:
    """Enroll in a separate process, so its memory is not counted as the kiosk's."""
    from edgeface.gallery import GalleryFile, load_key_file
    from edgeface.gallery.enroll import Enroller
    from edgeface.recognition import FacePipeline

    pipeline = FacePipeline.default()
    enroller = Enroller(pipeline)
    done = []
    with GalleryFile(gallery, load_key_file(key)).edit() as g:
        for person in people:
            files = sorted((LFW / person).glob("*.jpg"))
            plan = enroller.from_files(person, files[:3])
            if plan.templates:
                g.add_identity(person.replace("_", " "), plan.templates)
                done.append(person)
    queue.put(done)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split between the processes that map them, so
    the kiosk's and its helpers' PSS add up without counting shared libraries twice."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    out = []
    for c in text.split():
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"edgeface.detector" in cmd:  # the detector's helper processes, not multiprocessing's
            out.append(int(c))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--stranger-s", type=float, default=30.0)
    ap.add_argument("--camera-fps", type=float, default=30.0)
    ap.add_argument("--people", type=int, default=20, help="enrolled identities")
    ap.add_argument("--out", default=str(REPO / "out" / "bench_kiosk.json"))
    args = ap.parse_args(argv)

    import uvicorn

    from edgeface.camera.base import FrameSource
    from edgeface.gallery import create_key_file
    from edgeface.kiosk.app import create_app
    from edgeface.kiosk.config import parse_config
    from edgeface.kiosk.service import build_engine, build_pipeline, open_gallery

    people = sorted(
        (p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 6),
        key=lambda p: p.name,
    )[: args.people]
    strangers = sorted(
        (p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) == 1),
        key=lambda p: p.name,
    )[:60]

    class Scenes(FrameSource):
        kind, live = "images", True

        def __init__(self) -> None:
            super().__init__(name="bench")
            self.frames: list[bytes] = [BLANK]
            self.i = 0
            self.first_read: float | None = None
            self.last = time.monotonic()

        def show(self, frames: list[bytes]) -> None:
            self.first_read = None
            self.frames, self.i = frames, 0

        def _open(self) -> None:
            pass

        def _read(self) -> np.ndarray:
            wait = self.last + 1.0 / args.camera_fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.last = time.monotonic()
            data = self.frames[self.i % len(self.frames)]
            self.i += 1
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if self.first_read is None:
                self.first_read = time.monotonic()
            return frame

    BLANK = cv2.imencode(".jpg", np.full((H, W, 3), 110, np.uint8))[1].tobytes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-kiosk-"))
    create_key_file(tmp / "gallery.key")
    cfg = parse_config(
        {
            "state_dir": str(tmp / "state"),
            "camera": {"kind": "opencv"},
            "gallery": {"path": str(tmp / "gallery.efg"), "key_file": str(tmp / "gallery.key")},
            "server": {"preview_fps": 30.0},
            "verify": {"result_s": 1.0, "cooldown_s": 0.5},
            "lockout": {"failures": 100000, "global_failures": 100000},
            # the replay is of LFW press photos; liveness has its own test
            # (tests/test_kiosk_liveness.py)
            "liveness": {"required": False},
        },
        base=tmp,
    )
    t0 = time.perf_counter()
    pipeline = build_pipeline(cfg)
    load_s = time.perf_counter() - t0
    open_gallery(cfg, pipeline)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=enroll,
        args=(str(cfg.gallery.path), str(tmp / "gallery.key"), [p.name for p in people], queue),
    )
    proc.start()
    enrolled = queue.get(timeout=600)
    proc.join()
    probes = [
        (name.replace("_", " "), [frame_of(f) for f in sorted((LFW / name).glob("*.jpg"))[4:6]])
        for name in enrolled
    ]
    cam = Scenes()
    engine = build_engine(cfg, source=cam, pipeline=pipeline)
    app = create_app(engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    engine.start()
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    # --- the preview client: counts JPEG parts received per second --------------------------
    received: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/preview.mjpg")
        r = conn.getresponse()
        buf = b""
        while not stop.is_set():
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            n = buf.count(b"--frame")
            if n:
                now = time.monotonic()
                received.extend([now] * n)
                buf = buf[buf.rfind(b"--frame") + 7 :]
        conn.close()

    threading.Thread(target=watch, daemon=True).start()

    def wait_idle() -> None:
        cam.show([BLANK])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s = engine.snapshot(None)
            if s["result"] is None and s["faces"] == 0:
                break
            time.sleep(0.02)
        time.sleep(cfg.verify.policy.cooldown_s + 0.3)

    # --- latency trials ---------------------------------------------------------------------
    latencies, misses, wrong = [], 0, 0
    t_trials = time.monotonic()
    for i in range(args.trials):
        name, frames = probes[i % len(probes)]
        wait_idle()
        cam.show(frames)
        deadline = time.monotonic() + 10
        result = None
        while time.monotonic() < deadline:
            r = engine.snapshot(None)["result"]
            if r is not None:
                result = (r, time.monotonic())
                break
            time.sleep(0.002)
        if result is None or result[0]["kind"] != "welcome" or cam.first_read is None:
            misses += 1
            continue
        if result[0]["name"] != name:
            wrong += 1
        latencies.append(result[1] - cam.first_read)
    trials_s = time.monotonic() - t_trials
    preview = [t for t in received if t >= t_trials]
    preview_fps = (len(preview) - 1) / (preview[-1] - preview[0]) if len(preview) > 1 else 0.0
    recog_fps = engine.recognition_rate.per_s()

    # --- strangers ----------------------------------------------------------------------------
    wait_idle()
    events_before = len(engine.audit.path.read_text().splitlines())
    cam.show([frame_of(next(p.glob("*.jpg"))) for p in strangers])
    time.sleep(args.stranger_s)
    lines = engine.audit.path.read_text().splitlines()[events_before:]
    evs = [json.loads(line)["event"] for line in lines]
    accepted = evs.count("verify_accept")
    rejected = evs.count("verify_reject")

    me = os.getpid()
    kids = children(me)
    main_rss = rss_mb(me)
    helper_rss = sum(rss_mb(c) for c in kids)
    total_pss = pss_mb(me) + sum(pss_mb(c) for c in kids)
    stop.set()
    server.should_exit = True
    app.state.kiosk.closing.set()
    time.sleep(0.5)
    engine.stop()

    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_1m": os.getloadavg()[0],
        },
        "frame": [W, H],
        "camera_fps": args.camera_fps,
        "enrolled": len(probes),
        "model_load_s": round(load_s, 2),
        "trials": args.trials,
        "welcome_latency_s": {
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "min": round(min(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
            "all": [round(x, 3) for x in latencies],
        },
        "missed_trials": misses,
        "wrong_name": wrong,
        "preview_fps_while_recognizing": round(preview_fps, 1),
        "recognition_fps": round(recog_fps, 1),
        "trials_s": round(trials_s, 1),
        "strangers": {
            "seconds": args.stranger_s,
            "people": len(strangers),
            "rejected_attempts": rejected,
            "accepted": accepted,
        },
        "rss_mb": {
            "kiosk_process": round(main_rss, 1),
            "detector_helpers": round(helper_rss, 1),
            "helpers": len(kids),
            "pss_total_kiosk_and_helpers": round(total_pss, 1),
        },
    }
    rows = [
        ("preview fps while recognizing (MJPEG, client side)", f"{preview_fps:.1f}"),
        ("recognition frames/s", f"{recog_fps:.1f}"),
        (
            "face appears -> Welcome, median (min-max) s",
            f"{statistics.median(latencies):.2f} ({min(latencies):.2f}-{max(latencies):.2f})"
            if latencies
            else "n/a",
        ),
        ("trials welcomed / wrong name / missed", f"{len(latencies)} / {wrong} / {misses}"),
        (f"strangers accepted in {args.stranger_s:g} s", f"{accepted} ({rejected} rejected)"),
        ("RSS kiosk process MB", f"{main_rss:.0f}"),
        (f"RSS detector helpers MB ({len(kids)})", f"{helper_rss:.0f}"),
        ("PSS kiosk + helpers MB (shared pages counted once)", f"{total_pss:.0f}"),
        ("load average (1 min) at the end", f"{os.getloadavg()[0]:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"kiosk at {W}x{H}, camera {args.camera_fps:g} fps, {len(probes)} enrolled")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
