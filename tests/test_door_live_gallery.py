"""Gallery changes reach a running `edgeface door` within one frame: a real daemon process
(MTCNN, MobileFaceNet, encrypted gallery, replayed LFW photos, `file` relay) while the gallery
is changed with the real `edgeface gallery` commands: remove, re-enroll, rekey, delete.

The proof of "within one frame" is the audit chain's order: the daemon looks at the gallery
before every frame, so after the `gallery_loaded` record of the new generation no frame is
decided with the old one (no `unlock` of a removed person may follow it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeface.door.actuators import read_relay_state
from edgeface.door.audit import verify_log

pytestmark = pytest.mark.slow

PERSON = "Colin_Powell"
OTHER = "Tony_Blair"


def photos(lfw: Path, name: str, numbers: range) -> list[str]:
    return [str(lfw / "images" / name / f"{name}_{n:04d}.jpg") for n in numbers]


def edgeface(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out


class Door:
    """A real daemon on a looping replay of one enrolled person's photos."""

    def __init__(self, tmp: Path, lfw: Path, models_ready: None) -> None:
        self.tmp = tmp
        self.gallery = tmp / "gallery.efg"
        self.key = tmp / "gallery.key"
        self.audit = tmp / "audit.jsonl"
        self.relay = tmp / "relay"
        cam = tmp / "camera"
        cam.mkdir()
        for p in photos(lfw, PERSON, range(4, 10)):
            shutil.copy(p, cam)
        g = ["--gallery", str(self.gallery), "--key-file", str(self.key)]
        self.g = g
        edgeface("gallery", "init", *g, "--create-key")
        edgeface("gallery", "enroll", *g, "Colin Powell", *photos(lfw, PERSON, range(1, 4)))
        edgeface("gallery", "enroll", *g, "Tony Blair", *photos(lfw, OTHER, range(1, 4)))
        self.config = tmp / "door.toml"
        self.config.write_text(
            f"""
[camera]
kind = "images"
path = "{cam}"
loop = true
fps = 10
[recognition]
max_fps = 10
[gallery]
path = "{self.gallery}"
key_file = "{self.key}"
[policy]
min_face_size = 60
unlock_s = 0.5
cooldown_s = 0.2
[lockout]
failures = 1000
global_failures = 1000
[actuator]
kind = "file"
path = "{self.relay}"
[audit]
path = "{self.audit}"
[daemon]
watchdog = false
"""
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeface.cli.main", "door", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "door.log", "wb"),  # noqa: SIM115
        )

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.audit.read_text().splitlines()]

    def wait_for(self, what: Callable[[list[dict]], bool], timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.tmp / "door.log").read_text()[-3000:]
            if self.audit.exists() and what(recs := self.records()):
                return recs
            time.sleep(0.05)
        raise AssertionError(f"timed out; audit: {[r['event'] for r in self.records()]}")

    def unlocks_after(self, seq: int) -> int:
        return sum(1 for r in self.records() if r["event"] == "unlock" and r["seq"] > seq)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def last(recs: list[dict], event: str, **match: object) -> dict | None:
    hits = [r for r in recs if r["event"] == event and all(r.get(k) == v for k, v in match.items())]
    return hits[-1] if hits else None


def test_gallery_changes_take_effect_in_the_running_daemon(
    tmp_path: Path, lfw_dir: Path, models_ready: None
) -> None:
    door = Door(tmp_path, lfw_dir, models_ready)
    try:
        recs = door.wait_for(lambda rs: last(rs, "unlock") is not None)
        loaded = last(recs, "gallery_loaded")
        assert loaded is not None and loaded["identities"] == 2
        assert loaded["threshold_rule"] == "target_fpir" and loaded["gallery_size"] == 2

        # remove: refused from the first frame after the reload
        edgeface("gallery", "remove", *door.g, "Colin Powell")
        t_write = time.time()
        recs = door.wait_for(lambda rs: last(rs, "gallery_loaded", identities=1) is not None)
        reload = last(recs, "gallery_loaded", identities=1)
        assert reload is not None and reload["time"] - t_write < 5.0
        door.wait_for(lambda rs: sum(r["event"] == "rejected" for r in rs if r["seq"] >
                                     reload["seq"]) >= 3)  # fmt: skip
        assert door.unlocks_after(reload["seq"]) == 0

        # re-enroll: welcome again
        edgeface(
            "gallery", "enroll", *door.g, "Colin Powell", *photos(lfw_dir, PERSON, range(1, 4))
        )
        recs = door.wait_for(lambda rs: last(rs, "gallery_loaded", identities=2) is not None
                             and rs[-1]["seq"] > reload["seq"] + 1
                             and door.unlocks_after(reload["seq"]) > 0)  # fmt: skip
        back = [r for r in recs if r["event"] == "gallery_loaded" and r["seq"] > reload["seq"]]
        assert back and back[-1]["identities"] == 2

        # rekey: the daemon's key no longer opens the file -> locked, audited
        new_key = tmp_path / "new.key"
        edgeface("gallery", "rekey", *door.g, "--new-key-file", str(new_key), "--create-key")
        recs = door.wait_for(lambda rs: last(rs, "gallery_unavailable") is not None)
        down = last(recs, "gallery_unavailable")
        assert down is not None and "WrongKeyError" in down["reason"]
        time.sleep(2.0)
        assert door.unlocks_after(down["seq"]) == 0 and read_relay_state(door.relay) == "locked"
        # the operator installs the new key where the daemon reads it: back without a restart
        os.replace(new_key, door.key)
        recs = door.wait_for(lambda rs: door.unlocks_after(down["seq"]) > 0)

        # delete: locked, audited, and nobody gets in while it is gone
        door.gallery.unlink()
        recs = door.wait_for(
            lambda rs: (r := last(rs, "gallery_unavailable")) is not None and r["seq"] > down["seq"]
        )
        gone = last(recs, "gallery_unavailable")
        assert gone is not None and gone["reason"].startswith("GalleryNotFoundError")
        time.sleep(2.0)
        assert door.unlocks_after(gone["seq"]) == 0 and read_relay_state(door.relay) == "locked"
    finally:
        code = door.stop()
    assert code == 0
    assert read_relay_state(door.relay) == "locked"
    assert verify_log(door.audit).ok
    log = (tmp_path / "door.log").read_text()
    assert "threshold" in log and "for 2 enrolled" in log and "for 1 enrolled" in log
    assert "unlock: Colin Powell" in log
