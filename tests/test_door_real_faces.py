"""The door on real faces: LFW photos replayed through the real pipeline (MTCNN, alignment,
MobileFaceNet, encrypted gallery) with a controllable clock, and the real `edgeface door`
process killed while the relay is open. Threshold: the shipped FAR=1e-3 calibration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from doubles import FakeClock, ManualTimer

from edgeface.camera.base import EndOfStream, FrameSource
from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
from edgeface.door.audit import AuditLog, verify_files
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.pipeline_identifier import PipelineIdentifier
from edgeface.imaging import load_image
from edgeface.recognition import FacePipeline

ENROLLED = {"Colin_Powell": [1, 2, 3], "Tony_Blair": [1, 2, 3]}
FAR = 1e-3


def img(lfw: Path, name: str, n: int) -> Path:
    return lfw / "images" / name / f"{name}_{n:04d}.jpg"


@pytest.fixture(scope="module")
def door_pipeline(models_ready: None):
    from edgeface.detector import DetectorConfig
    from edgeface.recognition import FacePipeline, PipelineConfig

    # the same detector bound the daemon uses for policy.min_face_size = 60
    return FacePipeline.from_config(PipelineConfig(detector=DetectorConfig(min_face_size=48)))


@pytest.fixture(scope="module")
def threshold(door_pipeline, lfw_dir: Path) -> float:
    """The shipped calibration at FAR 1e-3; until it exists, the same quantile measured here on
    every pair of 80 LFW people not used below (3,160 impostor pairs)."""
    from edgeface.errors import ConfigError

    try:
        return door_pipeline.threshold(far=FAR)
    except ConfigError:
        pass
    people = [p for p in sorted((lfw_dir / "images").iterdir()) if p.name not in ENROLLED]
    embs = []
    for person in people[200:]:
        r = door_pipeline.best_face(load_image(next(iter(sorted(person.glob("*.jpg"))))))
        if r is not None:
            embs.append(r.embedding)
        if len(embs) == 80:
            break
    e = np.stack(embs)
    scores = (e @ e.T)[np.triu_indices(len(e), 1)]
    return float(np.quantile(scores, 1 - FAR))


@pytest.fixture(scope="module")
def gallery_files(tmp_path_factory, door_pipeline, lfw_dir: Path):
    from edgeface.gallery import GalleryFile, create_key_file
    from edgeface.gallery.store import ModelRef, Template

    d = tmp_path_factory.mktemp("gallery")
    key_path = d / "gallery.key"
    gf = GalleryFile(d / "gallery.efg", create_key_file(key_path))
    model = ModelRef.of(door_pipeline.embedder)
    gf.create(model=model)
    ids = {}
    with gf.edit() as g:
        for name, numbers in ENROLLED.items():
            temps = []
            for n in numbers:
                r = door_pipeline.best_face(load_image(img(lfw_dir, name, n)))
                temps.append(Template(r.embedding, float(r.face.score), model))
            ids[name] = g.add_identity(name.replace("_", " "), temps).id
    return d / "gallery.efg", key_path, ids


class ListSource(FrameSource):
    kind = "replay"
    live = False

    def __init__(self, images: list[np.ndarray], **kw) -> None:
        super().__init__(**kw)
        self.images = images

    def _open(self) -> None: ...

    def _read(self) -> np.ndarray:
        if self._index >= len(self.images):
            raise EndOfStream("done")
        return self.images[self._index]


BLANK = np.full((250, 250, 3), 128, np.uint8)


def strangers(lfw: Path, n: int) -> list[Path]:
    out = []
    for person in sorted((lfw / "images").iterdir()):
        if person.name not in ENROLLED:
            out.append(next(iter(sorted(person.glob("*.jpg")))))
        if len(out) == n:
            return out
    raise AssertionError("not enough LFW people")


def run_door(tmp_path: Path, frames: list[np.ndarray], door_pipeline, gallery_files, threshold):
    from edgeface.gallery import GalleryFile, load_key_file

    gpath, key_path, _ = gallery_files
    clock = FakeClock()
    timers = ManualTimer(clock)
    cfg = parse_config(
        {
            "camera": {"kind": "images", "path": str(tmp_path)},
            "actuator": {"kind": "file", "path": str(tmp_path / "relay")},
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            "policy": {"min_face_size": 60, "unlock_s": 5.0},
            "recognition": {"max_fps": 5.0},
            # LFW press photos; liveness has its own door replay (test_liveness_door.py)
            "liveness": {"required": False},
        }
    )
    ident = PipelineIdentifier(
        FacePipeline(door_pipeline.detector, door_pipeline.embedder, min_face_size=60),
        gallery=GalleryFile(gpath, load_key_file(key_path)).load(),
        threshold=threshold,
    )
    relay = tmp_path / "relay"
    states: list[str] = []
    observations = []
    inner = ident.identify

    def spy(rgb: np.ndarray):
        timers.fire_due()
        states.append(read_relay_state(relay))
        obs = inner(rgb)
        observations.append(obs)
        return obs

    ident.identify = spy  # type: ignore[method-assign]
    daemon = DoorDaemon(
        cfg,
        source=ListSource(frames, clock=clock),
        identifier=ident,
        actuator=FailSecureActuator(FileRelayActuator(relay), timer_factory=timers.factory),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        clock=clock,
        sleep=clock.sleep,
    )
    assert daemon.run() == 0
    recs = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return daemon, recs, states, observations


def test_enrolled_person_unlocks(tmp_path, lfw_dir, door_pipeline, gallery_files, threshold):
    frames = [BLANK] * 3 + [load_image(img(lfw_dir, "Colin_Powell", n)) for n in range(10, 18)]
    _, recs, states, obs = run_door(tmp_path, frames, door_pipeline, gallery_files, threshold)
    unlocks = [r for r in recs if r["event"] == "unlock"]
    assert len(unlocks) == 1
    assert unlocks[0]["identity_id"] == gallery_files[2]["Colin_Powell"]
    assert unlocks[0]["score"] >= threshold and unlocks[0]["votes"] == 3
    assert "unlocked" in states
    matched = [o for o in obs if o.identity_id == gallery_files[2]["Colin_Powell"]]
    assert len(matched) >= 3
    assert verify_files([tmp_path / "audit.jsonl"]).ok


def test_unknown_people_never_unlock_and_get_locked_out(
    tmp_path, lfw_dir, door_pipeline, gallery_files, threshold
):
    people = strangers(lfw_dir, 30)
    powell = [load_image(img(lfw_dir, "Colin_Powell", n)) for n in range(20, 25)]
    # 30 strangers (6 s), 32 s of empty frames (the 30 s pause runs out), then Powell
    frames = [load_image(p) for p in people] + [BLANK] * 160 + powell
    daemon, recs, states, obs = run_door(tmp_path, frames, door_pipeline, gallery_files, threshold)
    events = [r["event"] for r in recs]
    first_unlock = events.index("unlock") if "unlock" in events else len(events)
    assert "unlocked" not in states[: len(people)]
    assert all(r["event"] != "unlock" for r in recs[:first_unlock])
    assert events.count("rejected") >= 5
    lockout = next(r for r in recs if r["event"] == "lockout")
    assert lockout["pause_s"] == 30.0
    assert daemon.stats.skipped_lockout > 0  # strangers after the lockout were not embedded
    assert "lockout_end" in events
    # after the pause the enrolled person gets in
    assert events.index("lockout_end") < first_unlock < len(events)
    assert recs[first_unlock]["identity_id"] == gallery_files[2]["Colin_Powell"]
    scored = [o.score for o in obs[: len(people)] if o.has_face and not np.isnan(o.score)]
    assert len(scored) >= 20 and max(scored) < threshold


def test_one_good_frame_alone_does_not_unlock(
    tmp_path, lfw_dir, door_pipeline, gallery_files, threshold
):
    good = load_image(img(lfw_dir, "Tony_Blair", 10))
    others = [load_image(p) for p in strangers(lfw_dir, 36)[30:36]]
    frames = [good, *others[:2], BLANK, BLANK, good, *others[2:]]
    _, recs, states, obs = run_door(tmp_path, frames, door_pipeline, gallery_files, threshold)
    assert obs[0].identity_id == gallery_files[2]["Tony_Blair"]  # the frame itself matches
    assert "unlock" not in [r["event"] for r in recs]
    assert set(states) == {"locked"}


def write_door_toml(
    tmp_path: Path, lfw_dir: Path, gallery_files, threshold: float, **extra
) -> Path:
    gpath, key_path, _ = gallery_files
    cam = tmp_path / "camera"
    cam.mkdir()
    for n in range(30, 34):
        (cam / f"{n}.jpg").symlink_to(img(lfw_dir, "Colin_Powell", n))
    text = f"""
[camera]
kind = "images"
path = "{cam}"
loop = true
fps = 10
[recognition]
threshold = {threshold}
max_fps = 10
models = {json.dumps(extra.get("models", ["mtcnn", "mobilefacenet-dyn"]))}
[gallery]
path = "{gpath}"
key_file = "{extra.get("key_file", key_path)}"
[policy]
min_face_size = 60
unlock_s = 30
[actuator]
kind = "file"
path = "{tmp_path / "relay"}"
[audit]
path = "{tmp_path / "audit.jsonl"}"
[liveness]
required = {extra.get("liveness_required", "false")}
"""
    cfg = tmp_path / "door.toml"
    cfg.write_text(text)
    return cfg


def edgeface(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kw,
    )


def test_killing_the_real_daemon_leaves_the_relay_locked(
    tmp_path, lfw_dir, gallery_files, threshold
):
    cfg = write_door_toml(tmp_path, lfw_dir, gallery_files, threshold)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface.cli.main", "door", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    relay = tmp_path / "relay"
    try:
        deadline = time.monotonic() + 120
        while read_relay_state(relay) != "unlocked" and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            time.sleep(0.05)
        assert read_relay_state(relay) == "unlocked"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_relay_state(relay) == "locked"
    rep = verify_files([tmp_path / "audit.jsonl"])
    assert rep.ok
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events[:3] == ["start", "gallery_loaded", "unlock"]


def test_check_passes_on_a_good_setup(tmp_path, lfw_dir, gallery_files, threshold):
    cfg = write_door_toml(tmp_path, lfw_dir, gallery_files, threshold)
    out = edgeface("door", "--config", str(cfg), "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert "2 identities" in out.stdout and "got a 250x250 frame" in out.stdout


def test_missing_or_corrupt_model_fails_clearly(tmp_path, lfw_dir, gallery_files, threshold):
    cfg = write_door_toml(tmp_path, lfw_dir, gallery_files, threshold)
    empty_cache = tmp_path / "empty-cache"
    env = {**os.environ, "EDGEFACE_CACHE_DIR": str(empty_cache), "EDGEFACE_MODELS_DIR": ""}
    out = edgeface("door", "--config", str(cfg), "--check", env=env)
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if x.startswith("FAIL model mtcnn"))
    assert "not found" in line and "edgeface models fetch mtcnn" in line
    run = edgeface("door", "--config", str(cfg), env=env)
    assert run.returncode == 4  # ModelError
    assert run.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "not found" in run.stderr and "edgeface models fetch" in run.stderr
    assert read_relay_state(tmp_path / "relay") == "locked"
    # a corrupt embedder file earlier on the search path is refused by its sha256
    bad = tmp_path / "models" / "derived"
    bad.mkdir(parents=True)
    (bad / "mobilefacenet_dynamic.onnx").write_bytes(b"\x08\x08 not really onnx")
    env = {**os.environ, "EDGEFACE_MODELS_DIR": str(tmp_path / "models")}
    out = edgeface("door", "--config", str(cfg), "--check", "--no-camera", env=env)
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if x.startswith("FAIL model mobilefacenet-dyn"))
    assert "sha256" in line and "corrupt" in line


def test_wrong_gallery_key_fails_clearly(tmp_path, lfw_dir, gallery_files, threshold):
    from edgeface.gallery import create_key_file

    other = tmp_path / "other.key"
    create_key_file(other)
    cfg = write_door_toml(tmp_path, lfw_dir, gallery_files, threshold, key_file=str(other))
    out = edgeface("door", "--config", str(cfg), "--check", "--no-camera")
    assert out.returncode == 1
    assert any(x.startswith("FAIL gallery:") for x in out.stdout.splitlines()), out.stdout
    second = tmp_path / "second"
    second.mkdir()
    loose = tmp_path / "loose.key"
    loose.write_text((tmp_path / "other.key").read_text())
    loose.chmod(0o644)
    cfg = write_door_toml(
        second,
        lfw_dir,
        gallery_files,
        threshold,
        key_file=str(loose),
    )
    out = edgeface("door", "--config", str(cfg), "--check", "--no-camera")
    assert out.returncode == 1 and "FAIL gallery key" in out.stdout and "chmod 600" in out.stdout
