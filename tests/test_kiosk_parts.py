"""Kiosk parts without a server: kiosk.toml validation, sessions and their expiry, the PIN and
invitation stores, and the guidance computed from real LFW photos."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.kiosk.config import load_config, parse_config
from edgeface.kiosk.secrets_store import InviteStore, PinStore
from edgeface.kiosk.sessions import ANONYMOUS, OPERATOR, Sessions, csrf_ok

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- config -----------------------------------------------------------------------------------


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "kiosk.toml")
    assert cfg.server.host == "127.0.0.1"
    assert cfg.verify.policy.k == 3 and cfg.verify.policy.n == 5
    assert cfg.verify.policy.unlock_s == cfg.verify.result_s
    assert cfg.gallery.key_credential == "edgeface-gallery.key"
    assert cfg.audit.path == Path("/var/lib/edgeface/kiosk/audit/kiosk.jsonl")
    assert cfg.liveness.required and cfg.liveness.target_bpcer == 0.02


def test_defaults_bind_to_loopback(tmp_path: Path) -> None:
    cfg = parse_config({"camera": {"kind": "opencv"}}, base=tmp_path)
    assert cfg.server.host == "127.0.0.1" and not cfg.server.allow_remote
    assert cfg.recognition.max_fps == 10.0
    # the door's [liveness] table, parsed by the door's parser: required unless turned off
    from edgeface.door.config import LivenessCheckConfig

    assert cfg.liveness == LivenessCheckConfig() and cfg.liveness.required
    cal = parse_config(
        {"camera": {"kind": "opencv"}, "liveness": {"required": False, "calibration": "c.json"}},
        base=tmp_path,
    )
    assert not cal.liveness.required and cal.liveness.calibration == tmp_path / "c.json"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "camera: required"),
        ({"camera": {"kind": "opencv"}, "door": {}}, "door: unknown section"),
        ({"camera": {"kind": "opencv"}, "server": {"host": "0.0.0.0"}}, "not a loopback"),
        ({"camera": {"kind": "opencv"}, "server": {"host": "192.168.1.5"}}, "not a loopback"),
        ({"camera": {"kind": "opencv"}, "server": {"port": 70000}}, "server.port"),
        ({"camera": {"kind": "opencv"}, "server": {"prot": 1}}, "server.prot: unknown key"),
        ({"camera": {"kind": "opencv"}, "verify": {"k": 1, "n": 3}}, "verify.k"),
        ({"camera": {"kind": "opencv"}, "verify": {"k": 4, "n": 3}}, "verify.k"),
        ({"camera": {"kind": "opencv"}, "verify": {"result_s": 100}}, "verify.result_s"),
        ({"camera": {"kind": "opencv"}, "operator": {"pin_min_digits": 2}}, "pin_min_digits"),
        ({"camera": {"kind": "opencv"}, "enroll": {"templates": 9}}, "enroll.templates"),
        ({"camera": {"kind": "opencv"}, "server": {"max_body_bytes": 10}}, "max_body_bytes"),
        ({"camera": {"kind": "opencv"}, "state_dir": 5}, "state_dir"),
        ({"camera": {"kind": "webcam"}}, "camera.kind"),
        ({"camera": {"kind": "opencv"}, "recognition": {"far": 2.0}}, "recognition.far"),
        (
            {"camera": {"kind": "opencv"}, "liveness": {"threshold": 0.5, "target_bpcer": 0.1}},
            "liveness.threshold",
        ),
        ({"camera": {"kind": "opencv"}, "liveness": {"requird": False}}, "liveness.requird"),
    ],
)
def test_bad_configs_name_the_key(raw: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, base=tmp_path)


def test_remote_needs_explicit_opt_in(tmp_path: Path) -> None:
    cfg = parse_config(
        {"camera": {"kind": "opencv"}, "server": {"host": "0.0.0.0", "allow_remote": True}},
        base=tmp_path,
    )
    assert cfg.server.host == "0.0.0.0"


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary)


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_expire_and_roles_time_out() -> None:
    clock = FakeClock()
    s = Sessions(max_s=100, idle_s=10, max_sessions=3, clock=clock)
    a = s.new()
    s.raise_role(a, OPERATOR)
    clock.t += 9
    assert s.get(a.token).role == OPERATOR  # touched: idle time restarts
    clock.t += 11
    assert s.get(a.token).role == ANONYMOUS  # idle too long: back to anonymous
    clock.t += 90
    assert s.get(a.token) is None  # older than max_s: gone
    assert s.get(None) is None and s.get("x" * 500) is None


def test_sessions_are_bounded_and_login_rotates_csrf() -> None:
    s = Sessions(max_s=100, idle_s=10, max_sessions=3, clock=FakeClock())
    made = [s.new() for _ in range(5)]
    assert s.get(made[0].token) is None and s.get(made[1].token) is None
    assert s.get(made[4].token) is not None
    old = made[4].csrf
    s.raise_role(made[4], OPERATOR)
    assert made[4].csrf != old
    assert csrf_ok(made[4], made[4].csrf) and not csrf_ok(made[4], old)
    assert not csrf_ok(None, old) and not csrf_ok(made[4], None)


# --- PIN and invitations ----------------------------------------------------------------------


def test_pin_is_stored_as_scrypt_hash(tmp_path: Path) -> None:
    store = PinStore(tmp_path, min_digits=6)
    assert not store.is_set and not store.check("123456")
    store.set("123456")
    raw = store.path.read_text()
    assert "123456" not in raw and json.loads(raw)["kdf"] == "scrypt"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.check("123456") and not store.check("123457") and not store.check("1" * 100)
    for bad in ("12345", "12345a", "１２３４５６", "1" * 13):
        with pytest.raises(ConfigError):
            store.set(bad)
    store.path.write_text("{broken")
    from edgeface.errors import StorageError

    with pytest.raises(StorageError):
        store.check("123456")


def test_invitations_single_use_expiring_hashed(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = InviteStore(tmp_path, clock=clock)
    code = store.create("Ada Lovelace", 3600)
    assert len(code) == 10 and code.isdigit()
    assert code not in store.path.read_text()
    assert [i.name for i in store.pending()] == ["Ada Lovelace"]
    assert store.redeem("0" * 10 if code != "0" * 10 else "1" * 10) is None
    inv = store.redeem(code)
    assert inv is not None and inv.name == "Ada Lovelace"
    assert store.redeem(code) is None  # once only
    late = store.create("Bob", 60)
    clock.t += 61
    assert store.redeem(late) is None and store.pending() == []
    assert store.redeem("abc") is None and store.redeem(None) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        store.create("Eve", 0)


# --- guidance on real photos ------------------------------------------------------------------


def test_guidance_on_real_faces(pipeline: Any, lfw_dir: Path) -> None:
    from edgeface.gallery.quality import QualityGates
    from edgeface.imaging import load_image
    from edgeface.kiosk.guidance import guide

    gates = QualityGates()
    img = load_image(next((lfw_dir / "images" / "Colin_Powell").glob("*_0002.jpg")))
    faces = pipeline.analyze(img)
    assert guide(img, faces, gates, 60).code == "ok"
    assert guide(img, faces, gates, 60).boxes
    # far away: the same photo shrunk into a big empty frame
    small = np.zeros((480, 640, 3), np.uint8)
    tiny = cv2.resize(img, (110, 110))
    small[100:210, 100:210] = tiny
    assert guide(small, pipeline.analyze(small), gates, 60).code == "closer"
    # too dark
    dark = (img.astype(np.float32) * 0.12).astype(np.uint8)
    assert guide(dark, pipeline.analyze(dark), gates, 60).code == "too_dark"
    # blurred
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    assert guide(blurred, pipeline.analyze(blurred), gates, 60).code == "hold_still"
    # two people side by side
    other = load_image(next((lfw_dir / "images" / "Tony_Blair").glob("*_0002.jpg")))
    pair = np.concatenate([img, other], axis=1)
    assert guide(pair, pipeline.analyze(pair), gates, 60).code == "one_person"
    # nobody
    empty = np.full((240, 320, 3), 120, np.uint8)
    assert guide(empty, pipeline.analyze(empty), gates, 60).code == "none"


def test_guidance_face_the_camera(pipeline: Any, lfw_dir: Path) -> None:
    """A face turned sideways (yaw beyond the enrollment gate) is told to face the camera."""
    from edgeface.gallery.quality import QualityGates, assess
    from edgeface.imaging import load_image
    from edgeface.kiosk.guidance import guide

    gates = QualityGates()
    found = None
    for path in sorted((lfw_dir / "images" / "Colin_Powell").glob("*.jpg"))[:80]:
        img = load_image(path)
        faces = pipeline.analyze(img)
        if len(faces) == 1 and abs(assess(faces[0].face, faces[0].crop).yaw) > gates.max_yaw:
            found = (img, faces)
            break
    assert found is not None, "no turned face among the first 80 photos"
    assert guide(found[0], found[1], gates, 60).code == "face_camera"


def test_polling_does_not_keep_a_role_alive() -> None:
    clock = FakeClock()
    s = Sessions(max_s=100, idle_s=10, max_sessions=3, clock=clock)
    a = s.new()
    s.raise_role(a, OPERATOR)
    for _ in range(30):  # the page polls /api/state four times a second for 15 s
        clock.t += 0.5
        s.get(a.token, touch=False)
    assert s.get(a.token).role == ANONYMOUS


def test_the_kiosk_pipeline_tracks_faces_unless_told_not_to(tmp_path: Path, models_ready) -> None:
    """Like the door, the kiosk detects, then tracks (``[recognition] full_detect_every``)."""
    from kiosk_support import kiosk_config

    from edgeface.detector import MTCNNDetector
    from edgeface.detector.tracking import TrackingDetector
    from edgeface.kiosk.service import build_pipeline

    tracked = build_pipeline(kiosk_config(tmp_path))
    plain = build_pipeline(kiosk_config(tmp_path, recognition={"full_detect_every": 1}))
    try:
        assert isinstance(tracked.detector, TrackingDetector)
        assert isinstance(plain.detector, MTCNNDetector)
    finally:
        tracked.detector.close()
        plain.detector.close()
