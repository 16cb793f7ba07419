"""Fleet benchmark against a local Mosquitto: how fast a signed change reaches many doors, and
how fast a large snapshot reaches a new door.

    python bench/bench_fleet.py [--doors 50] [--repeats 5] [--snapshot 1000] [--out FILE]

* **change to 50 doors** (goal <= 2 s): 50 simulated doors in this process, each with its own
  MQTT connection (paho, its own network thread), its own encrypted gallery file and the same
  :class:`~edgeface.fleet.apply.ChangeApplier` the door agent uses (signature check, fleet-key
  decryption, writer lock, atomic save with fsync). Each door first gets a
  ``--gallery-size``-identity snapshot (untimed); then the operator publishes ``--repeats``
  single-identity upserts, one at a time, and the time from the operator's publish call until
  the last door has saved the change is taken.
* **snapshot to a new door** (goal <= 10 s): the operator publishes a ``--snapshot``-identity
  snapshot (3 templates each) retained; a new door connects, and the time from its connect
  call until its gallery is saved is taken.

Templates are random unit vectors: the cost of moving and applying them does not depend on
what they mean. Starts ``mosquitto`` itself on 127.0.0.1 (Debian package ``mosquitto``).
Prints a table; JSON with ``--out`` (default bench/results/fleet.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeface.fleet import envelope, topics  # noqa: E402
from edgeface.fleet.apply import ChangeApplier, StateStore  # noqa: E402
from edgeface.fleet.config import MqttConfig  # noqa: E402
from edgeface.fleet.link import MqttLink  # noqa: E402
from edgeface.fleet.operator import Operator, OperatorConfig, create_operator_keys  # noqa: E402
from edgeface.gallery import Gallery, GalleryFile, ModelRef, RawKey, create_key_file  # noqa: E402

MODEL = ModelRef("bench-model", "0" * 64)
FLEET = "edgeface/fleet"


def start_broker(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    if shutil.which("mosquitto") is None:
        sys.exit("mosquitto not found: apt-get install mosquitto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = root / "mosquitto.conf"
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        "persistence false\nmax_queued_messages 100000\nmessage_size_limit 0\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


def synthetic_operator_gallery(path: Path, n: int, per_id: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n * per_id, 128), dtype=np.float32)
    g = Gallery.from_arrays([f"Person {i}" for i in range(n)], emb, [per_id] * n, MODEL)
    gf = GalleryFile(path, create_key_file(path.with_suffix(".key")))
    gf.create(model=MODEL)
    with gf.edit() as live:
        live.merge(g)


class SimDoor:
    """One door: its own MQTT connection, gallery file and the agent's apply code."""

    def __init__(self, root: Path, name: str, port: int, keys: dict[str, Path]) -> None:
        root.mkdir(parents=True)
        self.gallery_file = GalleryFile(root / "gallery.efg", RawKey(os.urandom(32)))
        self.gallery_file.create(model=MODEL)
        self.applied: dict[int, float] = {}
        self.applier = ChangeApplier(
            self.gallery_file,
            operator_key=envelope.load_public_key(keys["public_key"]),
            fleet_key=RawKey(bytes.fromhex(keys["fleet_key"].read_text().strip())).key,
            state=StateStore(root / "fleet"),
            model=MODEL,
        )
        self.event = threading.Event()
        cfg = MqttConfig(host="127.0.0.1", port=port, device_id=name, queue_size=10)
        self.link = MqttLink(
            cfg,
            subscriptions=[(topics.log_filter(FLEET), 1), (topics.snapshot_topic(FLEET), 1)],
            on_message=self._message,
        )

    def _message(self, _topic: str, payload: bytes, retained: bool) -> None:
        if not payload:
            return
        for outcome in self.applier.offer(payload, retained=retained):
            if outcome.status == "applied" and outcome.seq is not None:
                self.applied[outcome.seq] = time.perf_counter()
                self.event.set()

    def close(self) -> None:
        self.link.close()


def wait_all(doors: list[SimDoor], seq: int, timeout: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(seq in d.applied for d in doors):
            return max(d.applied[seq] for d in doors)
        time.sleep(0.002)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doors", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gallery-size", type=int, default=100, help="identities each door holds")
    ap.add_argument("--snapshot", type=int, default=1000, help="identities in the big snapshot")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "fleet.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    broker, port = start_broker(tmp)
    doors: list[SimDoor] = []
    results: dict[str, object] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_1min": os.getloadavg()[0],
        "doors": args.doors,
        "gallery_size": args.gallery_size,
    }
    try:
        keys = create_operator_keys(tmp / "operator")
        opg = tmp / "operator" / "gallery.efg"
        synthetic_operator_gallery(opg, args.gallery_size, 3, seed=1)
        ocfg = OperatorConfig(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="operator"),
            signing_key=keys["signing_key"],
            fleet_key_file=keys["fleet_key"],
            state_dir=tmp / "operator" / "state",
            gallery=opg,
            gallery_key_file=opg.with_suffix(".key"),
        )
        for i in range(args.doors):
            doors.append(SimDoor(tmp / f"door-{i:03d}", f"door-{i:03d}", port, keys))
        for d in doors:
            d.link.start()
        for d in doors:
            if not d.link.connected.wait(30):
                sys.exit(f"{d.link.cfg.device_id} did not connect")
        with Operator(ocfg) as op:
            seq0, _ = op.push()  # every door starts from the same gallery (untimed)
            if wait_all(doors, seq0, 120) is None:
                sys.exit("the initial snapshot did not reach every door")
            g = op._gallery().load()
            ids = [i.id for i in g.identities()]
            latencies = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                seq, _ = op.enroll([ids[r % len(ids)]])
                t_last = wait_all(doors, seq, 60)
                if t_last is None:
                    sys.exit(f"change {seq} did not reach every door in 60 s")
                latencies.append(t_last - t0)
        results["change_to_all_doors_s"] = {
            "median": statistics.median(latencies),
            "max": max(latencies),
            "runs": latencies,
        }
        for d in doors:
            d.close()
        doors = []

        # a 1,000-identity snapshot reaching a new door
        big = tmp / "big"
        big.mkdir()
        bg = big / "gallery.efg"
        synthetic_operator_gallery(bg, args.snapshot, 3, seed=2)
        ocfg2 = OperatorConfig(
            mqtt=ocfg.mqtt,
            signing_key=keys["signing_key"],
            fleet_key_file=keys["fleet_key"],
            state_dir=tmp / "operator" / "state",
            gallery=bg,
            gallery_key_file=bg.with_suffix(".key"),
        )
        t0 = time.perf_counter()
        with Operator(ocfg2) as op:
            seq, n = op.push()
        publish_s = time.perf_counter() - t0
        size = op.state.message_path(seq).stat().st_size
        new = SimDoor(tmp / "new-door", "new-door", port, keys)
        doors = [new]
        t0 = time.perf_counter()
        new.link.start()
        t_last = wait_all([new], seq, 120)
        if t_last is None:
            sys.exit("the snapshot did not reach the new door in 120 s")
        results["snapshot"] = {
            "identities": n,
            "templates": 3 * n,
            "message_bytes": size,
            "operator_publish_s": publish_s,
            "new_door_s": t_last - t0,
        }
        assert len(new.gallery_file.load()) == n
    finally:
        for d in doors:
            d.close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    ch = results["change_to_all_doors_s"]
    sn = results["snapshot"]
    print(f"load average (1 min) at start: {results['load_1min']:.2f} on {os.cpu_count()} CPUs")
    print("| measurement | goal | result |")
    print("|---|---:|---:|")
    print(
        f"| one change applied by all {args.doors} doors (median of {args.repeats}, max) "
        f"| <= 2 s | {ch['median']:.3f} s (max {ch['max']:.3f} s) |"  # type: ignore[index]
    )
    print(
        f"| {sn['identities']:,}-identity snapshot ({sn['message_bytes'] / 1e6:.1f} MB) "  # type: ignore[index]
        f"to a new door | <= 10 s | {sn['new_door_s']:.3f} s |"  # type: ignore[index]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
