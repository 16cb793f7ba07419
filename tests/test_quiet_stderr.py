"""stderr carries edgeface's own lines only: libjpeg's "Corrupt JPEG data", OpenCV's
``[ WARN:...]`` and a closed stdout pipe's ``BrokenPipeError`` stay out of it unless
``--debug`` asks for them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

EDGEFACE = [sys.executable, "-m", "edgeface.cli.main"]


def _corrupt_jpeg(lfw_dir: Path, dest: Path) -> Path:
    data = bytearray((lfw_dir / "images/Tony_Blair/Tony_Blair_0001.jpg").read_bytes())
    data[3000] ^= 0xFF
    data[3001:3003] = b"\xff\xd9"  # an end-of-image marker inside the scan: libjpeg complains
    dest.write_bytes(bytes(data))
    return dest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEFACE, *args], capture_output=True, text=True, timeout=300)


def test_libjpeg_warnings_only_with_debug(lfw_dir: Path, tmp_path: Path, models_ready) -> None:
    photo = _corrupt_jpeg(lfw_dir, tmp_path / "corrupt.jpg")
    quiet = _run("detect", str(photo))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = _run("--debug", "detect", str(photo))
    assert loud.returncode == 0 and "Corrupt JPEG data" in loud.stderr


def test_opencv_camera_warnings_only_with_debug(tmp_path: Path, models_ready) -> None:
    cfg = tmp_path / "door.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [camera]
        kind = "opencv"
        device = "/dev/video97"
        [gallery]
        path = "{tmp_path / "g.efg"}"
        key_file = "{tmp_path / "g.key"}"
        [actuator]
        kind = "dryrun"
        [audit]
        path = "{tmp_path / "audit" / "door.jsonl"}"
    """)
    )
    quiet = _run("door", "--config", str(cfg), "--check")
    assert quiet.returncode == 1 and "FAIL camera" in quiet.stdout
    assert "WARN" not in quiet.stdout + quiet.stderr, quiet.stderr
    loud = _run("--debug", "door", "--config", str(cfg), "--check")
    assert "WARN" in loud.stdout + loud.stderr


def test_a_closed_stdout_pipe_is_not_an_error(lfw_dir: Path, models_ready) -> None:
    photos = sorted((lfw_dir / "images" / "George_HW_Bush").glob("*.jpg"))
    proc = subprocess.Popen(
        [*EDGEFACE, "detect", "--json", *map(str, photos * 10)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `edgeface detect ... | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "Broken" not in err, err
