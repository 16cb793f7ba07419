"""Ctrl-C: the whole process group gets SIGINT (as from a terminal); the command exits 130
with one line, no traceback from it or its detector helpers, no helper left running, and the
door's relay locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeface.door.actuators import read_relay_state

EDGEFACE = [sys.executable, "-m", "edgeface.cli.main"]


def _session_members(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: session id
            pids.append(int(entry.name))
    return pids


def _interrupt(args: list[str], ready: callable, timeout: float = 120) -> tuple[int, str, int]:
    proc = subprocess.Popen(
        [*EDGEFACE, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as from a terminal: a suite run in the background (``cmd &`` in a script) inherits
        # SIGINT ignored, and Python then keeps ignoring it in the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "never got ready"
            time.sleep(0.1)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    return proc.returncode, err, len(_session_members(proc.pid))


@pytest.fixture()
def door_config(tmp_path: Path, lfw_dir: Path) -> Path:
    from edgeface.cli.main import main

    key, gallery = tmp_path / "g.key", tmp_path / "g.efg"
    assert (
        main(["gallery", "init", "--gallery", str(gallery), "--key-file", str(key), "--create-key"])
        == 0
    )
    cfg = tmp_path / "door.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [camera]
        kind = "images"
        path = "{lfw_dir / "images" / "Colin_Powell"}"
        loop = true
        fps = 10
        [gallery]
        path = "{gallery}"
        key_file = "{key}"
        [actuator]
        kind = "file"
        path = "{tmp_path / "relay"}"
        [audit]
        path = "{tmp_path / "audit.jsonl"}"
        [daemon]
        watchdog = false
    """)
    )
    return cfg


def test_ctrl_c_on_the_door_exits_130_quietly_with_the_relay_locked(door_config: Path) -> None:
    audit = door_config.parent / "audit.jsonl"
    code, err, left = _interrupt(
        ["door", "--config", str(door_config)],
        ready=lambda: audit.exists() and b'"start"' in audit.read_bytes(),
    )
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "edgeface: interrupted"
    assert left == 0
    assert read_relay_state(door_config.parent / "relay") == "locked"


def test_ctrl_c_during_detection_exits_130_without_helper_tracebacks(
    lfw_dir: Path, tmp_path: Path
) -> None:
    # far more photos than the 4.5 s before Ctrl-C can get through (~6 ms each when idle)
    photos = sorted((lfw_dir / "images" / "George_HW_Bush").glob("*.jpg")) * 600
    # detect many photos; "ready" once the process (and its helper) has run for a while
    t0 = time.monotonic()
    code, err, left = _interrupt(
        ["detect", *map(str, photos)], ready=lambda: time.monotonic() - t0 > 4
    )
    assert code == 130, err
    assert err.strip() == "edgeface: interrupted", err
    assert left == 0
