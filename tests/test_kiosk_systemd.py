"""The kiosk's systemd units and boot steps: the service is hardened like the door's (exposure
<= 2.0 offline) but may listen on loopback; `systemd-analyze verify` is clean for both units;
the screen's unit, its autostart twin and the example config agree on the port; and the
exact Chromium command line of the screen unit, run headless, shows the kiosk page served by
a real kiosk, after `edgeface kiosk wait` has seen it answer."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kiosk_support import SceneCamera, kiosk_config, running_kiosk
from test_systemd_units import analyzer, directives

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edgeface-kiosk.service"
BROWSER = REPO / "systemd" / "edgeface-kiosk-browser.service"
DESKTOP = REPO / "systemd" / "edgeface-kiosk-browser.desktop"
EDGEFACE = [sys.executable, "-m", "edgeface.cli.main"]


def example_port() -> int:
    from edgeface.kiosk.config import load_config

    return load_config(REPO / "examples" / "kiosk.toml").server.port


def test_service_hardening() -> None:
    d = directives(UNIT)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["Restart"] == "always"
    assert re.fullmatch(r"\d+s", one["WatchdogSec"])
    assert one["DynamicUser"] == "yes" and one["User"] == "edgeface"
    assert one["StateDirectory"] == "edgeface"
    assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "yes"
    assert one["PrivateTmp"] == "yes" and one["NoNewPrivileges"] == "yes"
    assert d["CapabilityBoundingSet"] == [""] and one["AmbientCapabilities"] == ""
    assert one["DevicePolicy"] == "closed"
    assert {v.split()[0] for v in d["DeviceAllow"]} == {
        "char-video4linux",
        "char-media",
        "char-dma_heap",
    }
    assert one["MemoryDenyWriteExecute"] == "yes"
    assert "@system-service" in d["SystemCallFilter"]
    # loopback TCP only, and only the kiosk's port
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one["IPAddressDeny"] == "any" and one["IPAddressAllow"] == "localhost"
    assert one["SocketBindDeny"] == "any"
    assert one["SocketBindAllow"] == f"tcp:{example_port()}"
    assert "PrivateNetwork" not in one  # the browser outside the unit must reach it
    cred = one["LoadCredentialEncrypted"].split(":")[0]
    assert f'key_credential = "{cred}"' in (REPO / "examples" / "kiosk.toml").read_text()
    assert "kiosk --config /etc/edgeface/kiosk.toml" in one["ExecStart"]


def _verify(tmp_path: Path, unit: Path, key: str) -> None:
    text = re.sub(
        rf"^{key}=\S+",
        f"{key}={sys.executable} -m edgeface.cli.main",
        unit.read_text(),
        flags=re.M,
    )
    target = tmp_path / unit.name
    target.write_text(text)
    proc = subprocess.run(
        [analyzer(), "verify", str(target)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert unit.name not in proc.stderr, proc.stderr


def test_systemd_analyze_verify_both_units(tmp_path: Path) -> None:
    _verify(tmp_path, UNIT, "ExecStart")
    _verify(tmp_path, BROWSER, "ExecStartPre")


def test_service_exposure_is_at_most_2() -> None:
    proc = subprocess.run(
        [analyzer(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    assert float(m.group(1)) <= 2.0


def browser_command() -> list[str]:
    d = {k: v[-1] for k, v in directives(BROWSER).items()}
    return shlex.split(d["ExecStart"])


def test_screen_unit_and_autostart_entry_agree() -> None:
    d = {k: v[-1] for k, v in directives(BROWSER).items()}
    cmd = browser_command()
    port = example_port()
    assert cmd[0] == "/usr/bin/chromium" and "--kiosk" in cmd
    assert cmd[-1] == f"http://127.0.0.1:{port}/"
    assert f"kiosk wait --port {port}" in d["ExecStartPre"]
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(DESKTOP)
    exec_line = entry["Desktop Entry"]["Exec"]
    assert " ".join(cmd) in exec_line and f"kiosk wait --port {port}" in exec_line
    assert subprocess.run(["sh", "-n", str(REPO / "systemd" / "install-kiosk.sh")]).returncode == 0


def test_kiosk_wait_gives_up_on_a_dead_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [*EDGEFACE, "kiosk", "wait", "--port", str(port), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 12 and "not answering" in r.stderr


@pytest.mark.slow
def test_screen_unit_command_shows_the_kiosk_page(pipeline: Any, tmp_path: Path) -> None:
    """The unit's ExecStartPre, then its exact Chromium flags (headless for CI) on a live kiosk."""
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("chromium missing: scripts/test.sh installs it (apt-get install -y chromium)")
    with running_kiosk(kiosk_config(tmp_path), SceneCamera({}), pipeline) as srv:
        r = subprocess.run(
            [*EDGEFACE, "kiosk", "wait", "--port", str(srv.port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        cmd = browser_command()
        cmd = [
            *cmd[:-1],
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            f"{srv.url}/",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        dom = proc.stdout
        assert "<title>edgeface kiosk</title>" in dom
        # kiosk.js ran (the CSP let the page's own script in) and showed the start screen
        assert re.search(r'id="screen-idle" class="[^"]*\bactive\b', dom), dom[:3000]
