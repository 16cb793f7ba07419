"""The systemd unit: required hardening present, `systemd-analyze verify` clean, security
exposure <= 2.0 (offline analysis), and the recognition stack runs under the
MemoryDenyWriteExecute the unit sets. CI needs `apt-get install -y systemd` for the analyzer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edgeface-door.service"


def directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def analyzer() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: CI must run `apt-get install -y systemd`")
    return exe


def test_unit_has_the_required_hardening() -> None:
    d = directives(UNIT)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["Restart"] == "always"
    assert re.fullmatch(r"\d+s", one["WatchdogSec"])
    assert one["DynamicUser"] == "yes" and one["StateDirectory"] == "edgeface"
    assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "yes"
    assert one["PrivateTmp"] == "yes" and one["NoNewPrivileges"] == "yes"
    assert d["CapabilityBoundingSet"] == [""] and one["AmbientCapabilities"] == ""
    assert one["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert allowed == {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip"}
    assert one["RestrictAddressFamilies"] == "AF_UNIX"
    assert "@system-service" in d["SystemCallFilter"]
    assert one["MemoryDenyWriteExecute"] == "yes"
    # the credentials the unit loads are the ones the example config asks for
    example = (REPO / "examples" / "door.toml").read_text()
    creds = [v.split(":")[0] for v in d["LoadCredentialEncrypted"]]
    assert creds == ["edgeface-gallery.key", "edgeface-audit.key"]
    assert all(f'key_credential = "{c}"' in example for c in creds)


def test_restarts_are_limited_and_stopping_locks_the_relay() -> None:
    d = directives(UNIT)
    one = {k: v[-1] for k, v in d.items()}
    # at most StartLimitBurst starts per StartLimitIntervalSec, RestartSec apart: a unit that
    # fails at start gives up after ~5 tries instead of restarting every 2 s forever
    assert int(one["StartLimitBurst"]) == 5
    assert int(one["StartLimitIntervalSec"]) >= int(one["StartLimitBurst"]) * 60
    assert int(one["RestartSec"].rstrip("s")) >= 5
    assert one["ExecStopPost"].endswith("door --config /etc/edgeface/door.toml --lock")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = analyzer()
    unit = tmp_path / UNIT.name
    # verify checks that ExecStart exists: point it at this interpreter
    text = re.sub(
        r"^(ExecStart|ExecStopPost)=\S+",
        rf"\1={sys.executable} -m edgeface.cli.main",
        UNIT.read_text(),
        flags=re.M,
    )
    unit.write_text(text)
    proc = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "edgeface-door.service" not in proc.stderr, proc.stderr  # no warnings about it


def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    exe = analyzer()
    proc = subprocess.run(
        [exe, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    assert float(m.group(1)) <= 2.0


def test_install_script_is_valid_shell() -> None:
    assert subprocess.run(["sh", "-n", str(REPO / "systemd" / "install-door.sh")]).returncode == 0


MDWE_PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(3)
from edgeface.imaging import load_image
from edgeface.recognition import FacePipeline
p = FacePipeline.default()
r = p.best_face(load_image(sys.argv[1]))
print(r is not None and abs(float((r.embedding ** 2).sum()) - 1.0) < 1e-3)
"""


def test_recognition_runs_under_memory_deny_write_execute(
    models_ready: None, lfw_dir: Path
) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65,1,0,0,0))"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"kernel {os.uname().release} has no PR_SET_MDWE (needs Linux >= 6.3)")
    img = next((lfw_dir / "images" / "Colin_Powell").glob("*.jpg"))
    proc = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE, str(img)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True"
