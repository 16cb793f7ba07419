"""The README's install paths, each on a fresh virtual environment made from this checkout
(CI guards them): the quickstart (detect + verify, <= 600 MB, <= 30 lines), the base install
(``edgeface --help`` with numpy + OpenCV only) and the door unit's install script
(``install-door.sh`` into a temporary root, then ``edgeface door --check`` on a replay).

Slow: each creates a venv and installs into it (pip's cache keeps that to about a minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, SHARED

pytestmark = pytest.mark.slow

QUICKSTART_MAX_MB = 600
QUICKSTART_MAX_LINES = 30


def _checkout_copy(dest: Path) -> Path:
    """The working tree's files (tracked and new, not ignored) beside a link to ../shared."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    root = dest / "edgeface"
    for rel in filter(None, (p.decode() for p in listed)):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    (dest / "shared").symlink_to(SHARED)
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["EDGEFACE_CACHE_DIR"] = str(tmp_path / "model-cache")  # fetch from scratch
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def _du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def test_quickstart_on_a_fresh_checkout(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    r = subprocess.run(
        ["bash", "scripts/quickstart.sh"],
        cwd=root,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 0, "\n".join(output[-40:])
    assert "Traceback" not in r.stderr and "warning" not in r.stderr.lower(), r.stderr
    assert "Tony_Blair_0001.jpg: 1 face(s)" in r.stdout
    assert "SAME person" in r.stdout and "DIFFERENT people" in r.stdout
    assert (root / "quickstart-detect.png").stat().st_size > 0
    size = _du_mb(root / ".venv")
    print(f"\nquickstart: {len(output)} lines, venv {size:.0f} MB")
    assert len(output) <= QUICKSTART_MAX_LINES, "\n".join(output)
    assert size <= QUICKSTART_MAX_MB
    site = next((root / ".venv" / "lib").glob("python3*/site-packages"))
    assert not (site / "tensorflow").exists()


def test_base_install_lists_commands_and_names_missing_extras(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    venv = tmp_path / "base"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _env(tmp_path)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-v", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    # the build itself is clean: no deprecated license table, no package left out of the list
    build_log = pip.stdout + pip.stderr
    for noise in ("SetuptoolsDeprecationWarning", "would be ignored", "is absent from the"):
        assert noise not in build_log, noise
    edgeface = str(venv / "bin" / "edgeface")
    r = subprocess.run([edgeface, "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "detect" in r.stdout and "gallery" in r.stdout, r.stderr
    # the gallery needs cryptography: one line naming the extra, usage-class exit code 2
    r = subprocess.run([edgeface, "gallery", "list"], env=env, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "edgeface: error: this command needs the 'crypto' extra (cryptography is missing): "
        "pip install 'edgeface[crypto]'"
    )


def test_device_install_script_then_door_check(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    dest = tmp_path / "root"
    env = {**_env(tmp_path), "INSTALL_ROOT": str(dest), "EDGEFACE_EXTRAS": "device"}
    r = subprocess.run(
        ["sh", "systemd/install-door.sh", "."],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    edgeface = str(dest / "opt" / "edgeface" / "venv" / "bin" / "edgeface")
    state = dest / "var" / "lib" / "private" / "edgeface"
    assert (state / "models" / "derived" / "mtcnn_weights.npz").is_file()
    assert (dest / "etc" / "edgeface" / "door.toml").is_file()
    assert (dest / "etc" / "systemd" / "system" / "edgeface-door.service").is_file()
    site = next((dest / "opt" / "edgeface" / "venv" / "lib").glob("python3*/site-packages"))
    assert not (site / "tensorflow").exists() and not (site / "joblib").exists()
    run_env = {**env, "EDGEFACE_CACHE_DIR": str(state / "models")}
    key, gallery = state / "gallery.key", state / "gallery.efg"
    init = subprocess.run(
        [
            edgeface,
            "gallery",
            "init",
            "--gallery",
            str(gallery),
            "--key-file",
            str(key),
            "--create-key",
        ],
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    replay = tmp_path / "replay"
    replay.mkdir()
    photo = SHARED / "data/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"
    shutil.copy(photo, replay)
    enroll = subprocess.run(
        [
            edgeface,
            "gallery",
            "enroll",
            "--gallery",
            str(gallery),
            "--key-file",
            str(key),
            "Colin Powell",
            str(photo),
            "--min-face-size",
            "40",
        ],
        cwd=root,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert enroll.returncode == 0, enroll.stdout + enroll.stderr
    cfg = tmp_path / "door.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [camera]
        kind = "images"
        path = "{replay}"
        [recognition]
        models = ["mtcnn", "edgeface-xs"]
        [gallery]
        path = "{gallery}"
        key_file = "{key}"
        [actuator]
        kind = "file"
        path = "{tmp_path / "relay"}"
        [audit]
        path = "{state / "audit" / "door.jsonl"}"
    """)
    )
    check = subprocess.run(
        [edgeface, "door", "--config", str(cfg), "--check"],
        cwd=root,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, check.stdout + check.stderr
