"""Three real `edgeface door` processes (real MTCNN + MobileFaceNet, LFW photos replayed as
their cameras, file relays) and an operator, over a real Mosquitto: one central enrollment and
every door opens for that person; a lockdown stops all unlocking; the audit of every door is
collected with intact chains; a killed door goes offline through its last will."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_broker import Broker, Listener
from fleet_doors import wait_for, write_fleet_toml

from edgeface.door.actuators import read_relay_state
from edgeface.fleet.operator import create_operator_keys
from edgeface.gallery import GalleryFile, create_key_file
from edgeface.gallery.store import ModelRef, Template
from edgeface.imaging import load_image

DOORS = ["lobby", "garage", "lab"]


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def collect(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("fleet", "collect", "--config", str(config), "--out", str(out), *args)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_central_enrollment_opens_three_real_doors(tmp_path: Path, pipeline, lfw_dir: Path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", ["operator", "homeassistant", *DOORS])
    broker.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ha = None
    try:
        model = ModelRef.of(pipeline.embedder)
        op_dir = tmp_path / "operator"
        keys = create_operator_keys(op_dir)
        gallery = GalleryFile(op_dir / "gallery.efg", create_key_file(op_dir / "gallery.key"))
        gallery.create(model=model)
        with gallery.edit() as g:
            for name in ("Colin_Powell", "Tony_Blair"):
                temps = []
                for n in (1, 2, 3):
                    img = load_image(lfw_dir / "images" / name / f"{name}_{n:04d}.jpg")
                    r = pipeline.best_face(img)
                    temps.append(Template(r.embedding, float(r.face.score), model))
                g.add_identity(name.replace("_", " "), temps)
        powell = g.find("Colin Powell").id
        fleet_toml = write_fleet_toml(tmp_path / "fleet.toml", broker, keys, op_dir)
        collected = tmp_path / "collected"
        assert collect(fleet_toml, collected, "--seconds", "0.5").returncode == 0
        ha = Listener(broker, "homeassistant", ["edgeface/+/availability", "edgeface/+/event"])
        for door in DOORS:
            d = tmp_path / door
            cam = d / "camera"
            cam.mkdir(parents=True)
            for n in range(30, 34):
                (cam / f"{n}.jpg").symlink_to(
                    lfw_dir / "images" / "Colin_Powell" / f"Colin_Powell_{n:04d}.jpg"
                )
            GalleryFile(d / "gallery.efg", create_key_file(d / "gallery.key")).create(model=model)
            (d / "door.toml").write_text(
                f"""
[camera]
kind = "images"
path = "{cam}"
loop = true
fps = 10
[recognition]
max_fps = 5
[gallery]
path = "{d / "gallery.efg"}"
key_file = "{d / "gallery.key"}"
[policy]
min_face_size = 60
unlock_s = 2
[lockout]
failures = 1000
global_failures = 1000
[actuator]
kind = "file"
path = "{d / "relay"}"
[audit]
path = "{d / "audit.jsonl"}"
[daemon]
watchdog = false
[mqtt]
host = "127.0.0.1"
port = {broker.port}
device_id = "{door}"
password_file = "{broker.password_file(door)}"
operator_public_key = "{keys["public_key"]}"
fleet_key_file = "{keys["fleet_key"]}"
state_dir = "{d / "fleet"}"
display_names = true
"""
            )
            procs[door] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edgeface.cli.main",
                    "door",
                    "--config",
                    str(d / "door.toml"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(d / "stderr.log", "wb"),  # noqa: SIM115
            )
        for door in DOORS:
            wait_for(
                lambda door=door: ha.on(f"edgeface/{door}/availability")[-1:] == [b"online"],
                timeout=180,
                what=f"{door} online",
            )
        # nobody is enrolled yet: Colin Powell's photos open no door
        for door in DOORS:
            assert "unlock" not in [r["event"] for r in records(tmp_path / door / "audit.jsonl")]
        out = cli("fleet", "enroll", "--config", str(fleet_toml), "Colin Powell")
        assert out.returncode == 0, out.stderr
        for door in DOORS:
            audit = tmp_path / door / "audit.jsonl"
            unlock = wait_for(
                lambda audit=audit: [r for r in records(audit) if r["event"] == "unlock"],
                timeout=180,
                what=f"{door} unlocks for the enrolled person",
            )[0]
            assert unlock["identity_id"] == powell and unlock["votes"] >= 3
            applied = [r for r in records(audit) if r["event"] == "fleet_applied"]
            assert applied[0]["fleet_seq"] == 1 and applied[0]["op"] == "upsert"
        granted = [json.loads(p) for p in ha.on("edgeface/lobby/event")]
        assert any(
            e["event_type"] == "access_granted" and e["name"] == "Colin Powell" for e in granted
        )
        # lockdown: no door unlocks any more, even for the enrolled person
        assert cli("fleet", "lockdown", "--config", str(fleet_toml), "on").returncode == 0
        marks = {}
        for door in DOORS:
            audit = tmp_path / door / "audit.jsonl"
            wait_for(
                lambda audit=audit: "unlock_refused" in [r["event"] for r in records(audit)],
                timeout=120,
                what=f"{door} refuses in lockdown",
            )
            marks[door] = [r["event"] for r in records(audit)].index("lockdown_on")
        for door in DOORS:
            events = [r["event"] for r in records(tmp_path / door / "audit.jsonl")]
            assert "unlock" not in events[marks[door] :]
            assert read_relay_state(tmp_path / door / "relay") == "locked"
        # a killed door goes offline by its last will; the others stop cleanly
        os.kill(procs["lab"].pid, signal.SIGKILL)
        wait_for(lambda: ha.on("edgeface/lab/availability")[-1:] == [b"offline"], what="LWT")
        for door in ("lobby", "garage"):
            procs[door].send_signal(signal.SIGTERM)
            assert procs[door].wait(30) == 0
        res = collect(fleet_toml, collected, "--idle", "3", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        for door in DOORS:
            assert report[door]["ok"] and report[door]["records"] >= 4, report[door]
            assert read_relay_state(tmp_path / door / "relay") == "locked"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if ha is not None:
            ha.close()
        broker.stop()
