"""``edgeface kiosk``: pin, invite, --check, bad input (one line on stderr, documented exit
code), the real server started as a subprocess and stopped with SIGTERM, and a base install
(no Starlette/uvicorn) still running ``--help`` and ``kiosk invite``."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def edgeface(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture
def config(tmp_path: Path, lfw_dir: Path) -> Path:
    from edgeface.gallery import create_key_file

    cam = tmp_path / "cam"
    cam.mkdir()
    for p in sorted((lfw_dir / "images" / "Laura_Bush").glob("*.jpg"))[:3]:
        (cam / p.name).write_bytes(p.read_bytes())
    create_key_file(tmp_path / "gallery.key")
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(
        'state_dir = "state"\n'
        '[camera]\nkind = "images"\npath = "cam"\nfps = 10\nloop = true\n'
        '[gallery]\npath = "state/gallery.efg"\nkey_file = "gallery.key"\n'
    )
    return cfg


def test_pin_invite_and_check(config: Path, models_ready: None) -> None:
    r = edgeface("kiosk", "--check", "--config", str(config))
    assert r.returncode == 1 and "FAIL operator PIN" in r.stdout
    r = edgeface("kiosk", "pin", "--config", str(config), stdin="123\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "PIN" in r.stderr
    r = edgeface("kiosk", "pin", "--config", str(config), stdin="97531864\n")
    assert r.returncode == 0, r.stderr
    r = edgeface("kiosk", "--check", "--config", str(config))
    assert r.returncode == 0, r.stdout
    names = ("config", "model mtcnn", "liveness", "gallery", "state directory", "operator PIN")
    for name in (*names, "camera"):
        assert f"ok   {name}" in r.stdout
    assert "ok   challenge: off" in r.stdout
    with config.open("a") as f:
        f.write('[verify]\nchallenge = "head_turn"\nchallenge_timeout_s = 10\n')
    r = edgeface("kiosk", "--check", "--config", str(config))
    assert r.returncode == 0 and "ok   challenge: head turn" in r.stdout and "10 s)" in r.stdout
    r = edgeface("kiosk", "invite", "Ada Lovelace", "--config", str(config), "--valid-hours", "2")
    assert r.returncode == 0, r.stderr
    code = r.stdout.split(":")[1].split("\n")[0].replace(" ", "")
    from edgeface.kiosk.secrets_store import InviteStore, PinStore

    state = config.parent / "state"
    assert PinStore(state).check("97531864")
    inv = InviteStore(state).redeem(code)
    assert inv is not None and inv.name == "Ada Lovelace" and inv.expires - inv.created == 7200


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["kiosk", "invite"], 2, "give the person's name"),
        (["kiosk", "invite", "X", "--valid-hours", "0"], 2, "--valid-hours"),
        (["kiosk", "serve", "extra"], 2, "unexpected argument"),
        (["kiosk", "invite", "a\u0007b"], 7, "control characters"),
    ],
)
def test_bad_arguments_give_one_line(config: Path, args: list[str], code: int, text: str) -> None:
    r = edgeface(*args, "--config", str(config))
    assert r.returncode == code, r.stderr
    assert text in r.stderr and r.stderr.count("\n") == 1


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text('[camera]\nkind = "opencv"\n[server]\nhost = "0.0.0.0"\n')
    r = edgeface("kiosk", "--check", "--config", str(cfg))
    assert r.returncode == 2 and "not a loopback" in r.stderr and r.stderr.count("\n") == 1
    r = edgeface("kiosk", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_port_in_use_is_one_line(config: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = edgeface("kiosk", "--config", str(config), "--port", str(port))
    assert r.returncode == 2 and "cannot listen" in r.stderr and r.stderr.count("\n") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_starts_answers_and_stops_on_sigterm(config: Path, models_ready: None) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeface.cli.main",
            "kiosk",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                health = json.loads(conn.getresponse().read())
                conn.close()
                if health["camera"] == "ok":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "kiosk did not come up"
            time.sleep(0.3)
        # an open preview stream must not keep the server from stopping
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        stream.request("GET", "/preview.mjpg")
        assert stream.getresponse().status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        stream.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [
        json.loads(line)["event"]
        for line in (config.parent / "state" / "audit" / "kiosk.jsonl").read_text().splitlines()
    ]
    assert events[0] == "start" and events[-1] == "stop"
    assert (config.parent / "state" / "gallery.efg").exists()  # created on first start
    assert stat_mode(config.parent / "state") == 0o700


def stat_mode(p: Path) -> int:
    return os.stat(p).st_mode & 0o777


BASE_INSTALL = """
import sys
sys.modules['starlette'] = None  # as if the kiosk extra were not installed
sys.modules['uvicorn'] = None
from edgeface.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_base_install_runs_help_and_invite(config: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 0 and "kiosk" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, "kiosk", "invite", "Bo", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0 and "invitation for Bo" in r.stdout
    r = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, "kiosk", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 2 and "pip install 'edgeface[kiosk]'" in r.stderr


MDWE_SERVE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(3)
from edgeface.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kiosk_serves_under_memory_deny_write_execute(config: Path, models_ready: None) -> None:
    """The unit sets MemoryDenyWriteExecute=yes: the whole kiosk (uvicorn, Starlette, the
    pipeline) must run and answer with W^X enforced by the kernel."""
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65,1,0,0,0))"]
    )
    if probe.returncode != 0:
        pytest.skip(f"kernel {os.uname().release} has no PR_SET_MDWE (needs Linux >= 6.3)")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", MDWE_SERVE, "kiosk", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/state")
                state = json.loads(conn.getresponse().read())
                conn.close()
                if state["recognition_fps"] > 0 and state["faces"] > 0:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "kiosk did not recognize under MDWE"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
