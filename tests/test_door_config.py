"""door.toml: the shipped example parses; every bad value is a ConfigError naming its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.door.config import ActuatorConfig, load_config, parse_config
from edgeface.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {"camera": {"kind": "images", "path": "faces"}, "actuator": {"kind": "dryrun"}}


def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "door.toml")
    assert cfg.camera.kind == "picamera2"
    assert (cfg.policy.k, cfg.policy.n) == (3, 5)
    assert cfg.lockout.failures == 5 and cfg.lockout.pause_s == 30.0
    assert cfg.actuator == ActuatorConfig(kind="gpiozero", pin=17, active_high=True)
    assert cfg.gallery.key_credential == "edgeface-gallery.key"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL, base=tmp_path)
    assert cfg.camera.path == str(tmp_path / "faces")
    assert cfg.policy.k == 3 and cfg.policy.n == 5 and cfg.recognition.far == 1e-3
    assert cfg.audit.path == Path("/var/lib/edgeface/audit/door.jsonl")


def with_(section: str, **values: object) -> dict:
    raw = {k: dict(v) for k, v in MINIMAL.items()}
    raw.setdefault(section, {}).update(values)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (with_("policy", k=6), r"policy\.k: must be <= policy\.n"),
        (with_("policy", k=1), r"policy\.k: must be >= 2"),
        (with_("policy", unlock_s=-1), r"policy\.unlock_s: must be > 0"),
        (with_("policy", unlock_s=600), r"policy\.unlock_s: at most 60"),
        (with_("policy", unlok_s=5), r"policy\.unlok_s: unknown key"),
        (with_("policy", k="3"), r"policy\.k: expected int"),
        (with_("policy", window_s=float("nan")), r"policy\.window_s: must be a finite number"),
        (with_("lockout", pause_s=60, max_pause_s=10), r"lockout\.max_pause_s: must be >="),
        (with_("recognition", far=2.0), r"recognition\.far: must be between 0 and 1"),
        (with_("recognition", select="biggest"), r"recognition\.select"),
        (with_("recognition", models=[]), r"recognition\.models: must be a non-empty list"),
        (with_("recognition", full_detect_every=0), r"recognition\.full_detect_every: must be > 0"),
        (with_("recognition", detector_workers=0), r"recognition\.detector_workers: must be"),
        (with_("gallery", key_file="k", key_credential="c"), r"gallery\.key_file: give"),
        (with_("audit", max_bytes=10), r"audit\.max_bytes: must be >= 4096"),
        (with_("actuator", kind="relay"), r"actuator\.kind: one of"),
        (with_("actuator", kind="gpiod"), r"actuator\.line: required"),
        (
            with_("actuator", kind="command", unlock_command="open", lock_command=["x"]),
            r"actuator\.unlock_command: expected list",
        ),
        (with_("camera", kind="opencv", path="x"), r"camera\.path: unknown key"),
        (with_("camera", reconnect_max_s=-1), r"camera\.reconnect_max_s: expected a positive"),
        (with_("daemon", watchdog="yes"), r"daemon\.watchdog: expected bool"),
        ({**MINIMAL, "door": {}}, r"door: unknown section"),
        ({"actuator": {"kind": "dryrun"}}, r"camera: required section"),
        ({**MINIMAL, "policy": 3}, r"policy: expected a table"),
    ],
)
def test_bad_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_unreadable_or_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy\nk = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"bin\.toml"):
        load_config(binary)
    typo = tmp_path / "typo.toml"
    typo.write_text(
        '[camera]\nkind = "images"\npath = "x"\n[actuator]\nkind = "dryrun"\n[policy]\nk = 9\n'
    )
    with pytest.raises(ConfigError, match=r"typo\.toml: policy\.k"):
        load_config(typo)


def test_cli_reports_a_corrupt_config_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "door.toml"
    bad.write_text("[camera\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", "door", "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2  # ConfigError.exit_code
    assert proc.stderr.count("\n") == 1 and "not valid TOML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_camera_and_actuator_sections_are_typed(tmp_path: Path) -> None:
    """One schema (issue 14): camera and actuator are dataclasses read by the one validator,
    and the reconnect defaults are the Backoff's, defined once."""
    from edgeface.camera import Backoff, CameraConfig

    cfg = parse_config(
        {
            "camera": {"kind": "opencv", "device": 1, "fps": 15, "reconnect_max_s": 5},
            "actuator": {"kind": "command", "unlock_command": ["on"], "lock_command": ["off"]},
        },
        base=tmp_path,
    )
    assert cfg.camera == CameraConfig(kind="opencv", device=1, fps=15.0, reconnect_max_s=5.0)
    assert cfg.camera.reconnect_initial_s == Backoff().initial
    assert cfg.camera.source_options() == {"device": 1, "fps": 15.0}
    assert cfg.actuator.unlock_command == ("on",)
    assert cfg.actuator.options() == {"unlock_command": ["on"], "lock_command": ["off"]}


def test_kiosk_camera_reconnect_is_checked_too(tmp_path: Path) -> None:
    from edgeface.kiosk.config import parse_config as parse_kiosk

    camera = {"kind": "images", "path": "x", "reconnect_initial_s": 0}
    with pytest.raises(ConfigError, match=r"camera\.reconnect_initial_s: expected a positive"):
        parse_kiosk({"camera": camera}, base=tmp_path)


def test_minimum_face_sizes_are_named_apart() -> None:
    """Five "minimum face sizes" (issue 14), each defined once in edgeface.face_sizes."""
    from edgeface import face_sizes as fs
    from edgeface.detector import DetectorConfig
    from edgeface.door.config import PolicyConfig
    from edgeface.gallery.quality import QualityGates

    assert DetectorConfig().min_face_size == fs.DETECTOR_MIN_FACE == 20.0
    assert QualityGates().min_face_size == fs.ENROLL_MIN_FACE == 60.0
    assert PolicyConfig().min_face_size == fs.POLICY_MIN_FACE == 80.0
    assert PolicyConfig().detector_min_face_size == 64.0  # 0.8 x 80, as the door searches
    assert PolicyConfig(min_face_size=10.0).detector_min_face_size == fs.SMALLEST_DETECTABLE
