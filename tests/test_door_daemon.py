"""The daemon loop with a scripted identifier and a controllable clock: unlock flow, relock,
lockout, fault injection (identifier errors, model errors, camera loss) always ending locked,
SIGTERM and SIGKILL of a real daemon process, and a 10,000-frame soak with bounded RSS."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from doubles import FakeClock, ManualTimer, ScriptedIdentifier, enrolled, stranger

from edgeface.camera.backoff import Backoff
from edgeface.camera.base import CameraError, CameraEvent, EndOfStream, FrameSource
from edgeface.camera.replay import ImageDirectorySource
from edgeface.camera.resilient import ResilientSource
from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
from edgeface.door.audit import AuditLog, verify_files
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.identify import Observation
from edgeface.door.inbox import DoorInbox
from edgeface.errors import ModelError
from edgeface.imaging import load_image

LFW = SHARED / "data" / "lfw" / "images"
FACES = sorted((LFW / "Colin_Powell").glob("*.jpg"))[:3]
#: the real daemon with a scripted identifier, as its own process (see tests/scripted_door.py)
SCRIPTED_DOOR = Path(__file__).resolve().parent / "scripted_door.py"
ALICE, X = enrolled(), stranger()
NO_FACE = Observation.no_face(0.5)


class ArraySource(FrameSource):
    """Real images preloaded in memory, played in a loop (soak: no disk I/O per frame)."""

    kind = "array"
    live = False

    def __init__(self, images: list[np.ndarray], limit: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.images, self.limit = images, limit

    def _open(self) -> None: ...

    def _read(self) -> np.ndarray:
        if self.limit is not None and self._index >= self.limit:
            raise EndOfStream("done")
        return self.images[self._index % len(self.images)]


class Rig:
    def __init__(
        self, tmp_path: Path, script, *, source=None, inbox=None, audit=None, **sections
    ) -> None:
        self.clock = FakeClock()
        self.timers = ManualTimer(self.clock)
        self.relay = tmp_path / "relay"
        self.audit_path = tmp_path / "audit.jsonl"
        raw = {
            "camera": {"kind": "images", "path": str(tmp_path)},
            "actuator": {"kind": "file", "path": str(self.relay)},
            "audit": {"path": str(self.audit_path)},
            "recognition": {"max_fps": 5.0},
            **sections,
        }
        self.cfg = parse_config(raw)
        self.identifier = ScriptedIdentifier(script, cycle=False)
        self.actuator = FailSecureActuator(
            FileRelayActuator(self.relay), timer_factory=self.timers.factory
        )
        self.source = source or ImageDirectorySource(files=FACES, loop=True, clock=self.clock)
        self.daemon = DoorDaemon(
            self.cfg,
            source=self.source,
            identifier=self.identifier,
            actuator=self.actuator,
            audit=audit or AuditLog(self.audit_path),
            clock=self.clock,
            sleep=self.clock.sleep,
            inbox=inbox,
        )
        self.states: list[str] = []
        inner = self.identifier.identify

        def spy(rgb: np.ndarray) -> Observation:
            self.timers.fire_due()
            self.states.append(read_relay_state(self.relay))
            return inner(rgb)

        self.identifier.identify = spy  # type: ignore[method-assign]

    def run(self, frames: int) -> int:
        return self.daemon.run(max_frames=frames)

    def events(self) -> list[str]:
        return [json.loads(x)["event"] for x in self.audit_path.read_text().splitlines()]


def test_enrolled_person_unlocks_then_relocks(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [NO_FACE, ALICE, ALICE, ALICE] + [NO_FACE] * 40, policy={"unlock_s": 4.0})
    assert rig.run(44) == 0
    # frames at 5 fps: unlocked from the 4th frame until 4 s later, then locked again
    assert rig.states[:4] == ["locked"] * 4
    assert rig.states[4:23] == ["unlocked"] * 19  # 3.8 s of frames after the unlock
    assert set(rig.states[23:]) == {"locked"}  # 4.0 s after: locked again
    ev = rig.events()
    assert ev == ["start", "unlock", "relock", "stop"]
    unlock = json.loads(rig.audit_path.read_text().splitlines()[1])
    assert unlock["identity_id"] == "id-alice" and unlock["votes"] == 3
    assert unlock["threshold"] == 0.5 and unlock["score"] == 0.8
    assert read_relay_state(rig.relay) == "locked"
    assert verify_files([rig.audit_path]).ok


def test_unknown_faces_never_unlock_and_trigger_the_lockout(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [X] * 200 + [ALICE] * 20 + [NO_FACE] * 100)
    rig.run(320)
    assert "unlocked" not in rig.states[:200]
    ev = rig.events()
    assert ev.count("rejected") >= 5 and "lockout" in ev
    lockout = next(
        json.loads(x) for x in rig.audit_path.read_text().splitlines() if '"lockout"' in x
    )
    assert lockout["pause_s"] == 30.0 and lockout["scope"] == "images"
    # while locked out nothing is identified: frames were skipped, not embedded
    assert rig.daemon.stats.skipped_lockout > 0
    assert "lockout_end" in ev


def test_enrolled_person_is_refused_during_a_lockout(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [X] * 25 + [ALICE] * 400, lockout={"failures": 5, "pause_s": 30.0})
    rig.run(25 + 100)  # 100 frames at 5 fps = 20 s, inside the 30 s pause
    assert "unlock" not in rig.events()
    assert rig.identifier.calls == 25  # the enrolled frames were never even identified


def test_identifier_errors_lock_and_are_audited(tmp_path: Path) -> None:
    script = [ALICE, ALICE, ALICE, RuntimeError("onnx exploded")] + [NO_FACE] * 5
    rig = Rig(tmp_path, script, policy={"unlock_s": 30.0})
    assert rig.run(9) == 0
    assert rig.states[3] == "unlocked"  # the frame that raised saw an open door...
    assert rig.states[4] == "locked"  # ...and the next frame sees it locked
    assert rig.events() == ["start", "unlock", "fault", "stop"]
    assert read_relay_state(rig.relay) == "locked"


def test_too_many_consecutive_errors_exit_non_zero(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [RuntimeError("bad frame")] * 10, daemon={"max_consecutive_errors": 3})
    assert rig.run(10) != 0
    assert rig.events().count("fault") == 4  # 3 frame errors + the fatal one


def test_model_error_is_fatal_and_leaves_it_locked(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        [ALICE, ALICE, ALICE, ModelError("model file vanished")],
        policy={"unlock_s": 30.0},
    )
    assert rig.run(10) == ModelError.exit_code
    assert read_relay_state(rig.relay) == "locked"
    assert rig.events()[-2:] == ["fault", "stop"]


class DyingCamera(FrameSource):
    """Gives frames, dies for a few reads, comes back."""

    kind = "usb"

    def __init__(self, image: np.ndarray, pattern: str, **kw) -> None:
        super().__init__(**kw)
        self.image, self.pattern, self.pos = image, pattern, 0

    def _open(self) -> None: ...

    def _read(self) -> np.ndarray:
        c = self.pattern[self.pos % len(self.pattern)]
        self.pos += 1
        if c == "x":
            raise CameraError("usb camera: no frame (camera disconnected?)")
        return self.image


def test_camera_loss_locks_immediately_and_reconnects(tmp_path: Path) -> None:
    img = load_image(FACES[0])
    clock = FakeClock()
    pattern = "fffff" + "xxx" + "f" * 30
    waits: list[float] = []
    reported: list[CameraEvent] = []
    inbox = DoorInbox()  # made first, given to the camera and the daemon: no cycle

    def on_event(event: CameraEvent, detail: str) -> None:
        reported.append(event)
        inbox.camera_event(event, detail)

    src = ResilientSource(
        DyingCamera(img, pattern, clock=clock),
        backoff=Backoff(initial=0.5, jitter=0),
        sleep=waits.append,
        on_event=on_event,
        should_stop=inbox.stopping,
    )
    src.live = False  # synchronous reads, so the test is deterministic
    rig = Rig(
        tmp_path,
        [NO_FACE] + [ALICE] * 3 + [NO_FACE] * 30,
        source=src,
        inbox=inbox,
        policy={"unlock_s": 30.0},
    )
    rig.run(20)
    assert reported == [CameraEvent.LOST, CameraEvent.RESTORED]
    assert inbox.stopping()  # the daemon's end stops the camera's reconnect loop too
    assert rig.states[3] == "locked" and rig.states[4] == "unlocked"
    assert rig.states[5] == "locked"  # camera lost between these two frames -> locked
    assert rig.events() == ["start", "unlock", "camera_lost", "camera_restored", "stop"]
    assert waits == [0.5, 1.0, 2.0]


class AuditDiesAtShutdown(AuditLog):
    """A real log whose every append raises once ``dead`` is set."""

    dead = False

    def append(self, event: str, **fields):  # type: ignore[override]
        if self.dead:
            raise RuntimeError("audit log gone")
        return super().append(event, **fields)


def test_relay_locked_and_closed_when_the_audit_raises_during_shutdown(tmp_path: Path) -> None:
    audit = AuditDiesAtShutdown(tmp_path / "audit.jsonl")
    rig = Rig(tmp_path, [ALICE] * 3 + [NO_FACE] * 2, audit=audit, policy={"unlock_s": 30.0})
    closed: list[bool] = []
    real_close = rig.actuator.close
    rig.actuator.close = lambda: (closed.append(True), real_close())[1]  # type: ignore[method-assign]
    inner = rig.identifier.identify

    def last_frame(rgb: np.ndarray) -> Observation:
        obs = inner(rgb)
        if len(rig.states) == 5:  # the last frame: the loop ends next, with the relay open
            assert rig.states[-1] == "unlocked"
            audit.dead = True
            rig.daemon.inbox.camera_event(CameraEvent.RESTORED, "late event for the finally")
        return obs

    rig.identifier.identify = last_frame  # type: ignore[method-assign]
    code = rig.run(5)
    assert read_relay_state(rig.relay) == "locked" and closed == [True]
    assert code == 70  # the stop could not be recorded: non-zero, so systemd notices
    assert rig.events() == ["start", "unlock"]


def test_lockout_reports_its_own_end(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [X] * 200 + [NO_FACE] * 400)
    rig.run(150)
    lockout, name = rig.daemon.lockout, rig.daemon.source_name
    assert rig.daemon.stats.lockouts >= 1 and rig.daemon.status()["lockout"]
    end = lockout.until(name)
    assert end is not None and not lockout.ended(name, end - 0.1)
    assert lockout.ended(name, end) and not lockout.ended(name, end + 1)  # reported once
    assert lockout.until(name, end) is None


def write_config(tmp_path: Path, **over: str) -> Path:
    for f in FACES:
        (tmp_path / f.name).symlink_to(f)
    cfg = tmp_path / "door.toml"
    cfg.write_text(f"""
[camera]
kind = "images"
path = "{tmp_path}"
loop = true
fps = 20
[actuator]
kind = "file"
path = "{tmp_path / "relay"}"
[audit]
path = "{tmp_path / "audit.jsonl"}"
[policy]
unlock_s = {over.get("unlock_s", "30")}
[recognition]
max_fps = 10
""")
    return cfg


def start_daemon(cfg: Path, script: str = "enrolled") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTED_DOOR), "--config", str(cfg), "--script", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(relay: Path, state: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_relay_state(relay) == state:
            return True
        time.sleep(0.02)
    return False


def test_sigkill_of_the_daemon_leaves_the_relay_locked(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = start_daemon(cfg)
    try:
        assert wait_for(tmp_path / "relay", "unlocked"), "daemon never unlocked"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_relay_state(tmp_path / "relay") == "locked"
    # the audit log is intact up to the kill (every record was fsynced)
    rep = verify_files([tmp_path / "audit.jsonl"])
    assert rep.ok and rep.records >= 2


def test_sigterm_locks_and_logs_a_clean_stop(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = start_daemon(cfg)
    try:
        assert wait_for(tmp_path / "relay", "unlocked"), "daemon never unlocked"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_relay_state(tmp_path / "relay") == "locked"
    recs = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in recs][-2:] == ["signal", "stop"]
    assert recs[-1]["code"] == 0
    assert verify_files([tmp_path / "audit.jsonl"]).ok


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.slow
def test_soak_10000_frames_without_memory_growth(tmp_path: Path) -> None:
    images = [load_image(f) for f in FACES]
    # a day at the door, compressed: passers-by, enrolled entries, strangers, empty frames
    cycle = [NO_FACE] * 20 + [ALICE] * 5 + [NO_FACE] * 30 + [X] * 7 + [NO_FACE] * 40
    n = 10_000
    script = (cycle * (n // len(cycle) + 1))[:n]
    rig = Rig(tmp_path, script, source=ArraySource(images, limit=n))
    rig.daemon.feed.source.clock = rig.clock
    rig.run(1000)  # warm up allocators and caches, then measure
    rig.daemon.stop_requested.clear()
    start = rss_kib()
    t0 = time.perf_counter()
    assert rig.daemon.run(max_frames=n) == 0
    elapsed = time.perf_counter() - t0
    growth = (rss_kib() - start) / start
    assert rig.daemon.stats.frames == n
    assert rig.daemon.stats.unlocks > 50
    assert growth < 0.05, f"RSS grew {growth:.1%}"
    assert verify_files([rig.audit_path]).ok
    print(f"soak: {n} frames in {elapsed:.1f} s, RSS {start} KiB -> {rss_kib()} KiB")


def test_build_daemon_wires_camera_and_daemon_through_one_inbox(tmp_path: Path) -> None:
    """No cycle: the inbox is made first; the camera reports into it and stops on its flag."""
    from edgeface.door.notify import Notifier
    from edgeface.door.service import build_daemon

    cfg = parse_config(
        {
            "camera": {"kind": "opencv", "device": str(tmp_path / "no-such-video")},
            "actuator": {"kind": "file", "path": str(tmp_path / "relay")},
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        }
    )
    daemon = build_daemon(
        cfg, identifier=ScriptedIdentifier([NO_FACE]), notifier=Notifier(address="")
    )
    src = daemon.source
    assert isinstance(src, ResilientSource)
    assert src.on_event == daemon.inbox.camera_event and src.should_stop == daemon.inbox.stopping
    daemon.actuator.open()
    daemon.actuator.unlock(5.0)
    src.on_event(CameraEvent.LOST, "unplugged")
    assert read_relay_state(tmp_path / "relay") == "locked"  # at once, before the loop runs
    daemon.request_stop()  # the camera's reconnect loop ends on the same flag
    assert daemon.run() == 0
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events == ["start", "camera_lost", "stop"]
