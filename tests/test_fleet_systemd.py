"""The MQTT drop-in: the door unit alone keeps AF_UNIX only; with the drop-in the unit
verifies cleanly and allows IPv4/IPv6 to the broker's address only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edgeface-door.service"
DROPIN = REPO / "systemd" / "edgeface-door-mqtt.conf"


def values(path: Path, key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_dropin_opens_the_network_only_for_the_broker() -> None:
    assert values(UNIT, "RestrictAddressFamilies") == ["AF_UNIX"]
    assert values(UNIT, "PrivateNetwork") == ["yes"] and values(UNIT, "IPAddressDeny") == ["any"]
    assert values(DROPIN, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert values(DROPIN, "PrivateNetwork") == ["no"]
    assert len(values(DROPIN, "IPAddressAllow")) == 1
    assert "IPAddressDeny" not in DROPIN.read_text().replace("IPAddressDeny=any stays", "")
    creds = [v.split(":")[0] for v in values(DROPIN, "LoadCredentialEncrypted")]
    assert creds == ["edgeface-mqtt.password", "edgeface-fleet.key"]


def test_unit_with_dropin_verifies(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: CI must run `apt-get install -y systemd`")
    unit = tmp_path / UNIT.name
    text = re.sub(
        r"^(ExecStart|ExecStopPost)=\S+",
        rf"\1={sys.executable} -m edgeface.cli.main",
        UNIT.read_text(),
        flags=re.M,
    )
    # the drop-in's settings as systemd applies them: after the unit's own [Service] lines
    unit.write_text(text + "\n" + DROPIN.read_text())
    proc = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert UNIT.name not in proc.stderr, proc.stderr  # no "ignoring assignment" warnings
