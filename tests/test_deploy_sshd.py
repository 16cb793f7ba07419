"""``edgeface deploy push`` against real OpenSSH servers on 127.0.0.1.

Each test device is a real ``sshd`` (Debian ``openssh-server``, installed by scripts/test.sh)
on a random loopback port with throwaway host and user keys, whose sessions get the device's
settings through ``SetEnv`` (device root, trusted keys, restart and health commands), so the
remote ``edgeface bundle install`` runs this checkout's interpreter against a temporary root.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from bundle_support import device, float_bundle, make_keys

from edgeface.bundle.errors import DeployError
from edgeface.cli.main import main

pytestmark = pytest.mark.slow
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    """A throwaway ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeface-test", "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def _start_sshd(d: Path, user_pub: str, env: dict[str, str]) -> tuple[subprocess.Popen, int, str]:
    d.mkdir(parents=True)
    host_pub = _keygen(d / "host_key")
    (d / "authorized_keys").write_text(user_pub + "\n")
    port = _free_port()
    setenv = " ".join(f'"{k}={v}"' for k, v in env.items())
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
        f"SetEnv {setenv}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, host_pub
        time.sleep(0.05)
    proc.kill()
    pytest.fail("sshd did not listen within 20 s")


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, models_ready: None
) -> Iterator[SimpleNamespace]:
    if not Path(SSHD).exists():
        pytest.fail("sshd missing: apt-get install openssh-server (scripts/test.sh does it)")
    d = tmp_path_factory.mktemp("fleet")
    private, trusted = make_keys(d)
    bundles = {v: float_bundle(d / f"door-v{v}.efb", private, v) for v in (1, 2, 3)}
    user_pub = _keygen(d / "id_ed25519")
    servers, known = [], []
    for name in ("door-a", "door-b"):
        env = {
            "EDGEFACE_DEVICE_ROOT": str(d / name / "var-lib-edgeface"),
            "EDGEFACE_TRUSTED_KEYS": str(trusted),
            "EDGEFACE_RESTART_COMMAND": "true",
            "EDGEFACE_HEALTH_COMMAND": "true",
        }
        proc, port, host_pub = _start_sshd(d / name, user_pub, env)
        servers.append(
            SimpleNamespace(name=name, proc=proc, port=port, root=d / name / "var-lib-edgeface")
        )
        known.append(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}")
    (d / "known_hosts").write_text("\n".join(known) + "\n")
    user = getpass.getuser()
    yield SimpleNamespace(
        d=d, trusted=trusted, bundles=bundles, servers=servers, user=user,
        hosts=[f"{user}@127.0.0.1:{s.port}" for s in servers],
        common=["-i", str(d / "id_ed25519"), "--known-hosts", str(d / "known_hosts"),
                "--remote-edgeface", f"{sys.executable} -m edgeface.cli.main"],
    )  # fmt: skip
    for s in servers:
        s.proc.terminate()
        s.proc.wait(timeout=10)


def test_push_installs_on_every_host(fleet: SimpleNamespace, capsys) -> None:
    f = fleet
    assert main(["deploy", "push", str(f.bundles[1]), *f.hosts, *f.common]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["host", "result", "version"]
    assert out.count(" ok ") == 2, out
    for s in f.servers:
        assert device(s.root, f.trusted).current_version() == 1
    # a host that does not answer fails alone; --json; non-zero exit
    dead = f"{f.user}@127.0.0.1:{_free_port()}"
    rc = main(["deploy", "push", str(f.bundles[2]), *f.hosts, dead, *f.common, "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == DeployError.exit_code
    assert [(r["ok"], r["version"]) for r in rows[:2]] == [(True, 2), (True, 2)]
    assert rows[2]["ok"] is False and rows[2]["step"] == "copy"
    assert all(r["install"]["selftest"][0]["ok"] for r in rows[:2])
    for s in f.servers:
        dev = device(s.root, f.trusted)
        assert (dev.current_version(), dev.previous_version()) == (2, 1)
    # the device's own refusal comes back as one line (anti-rollback)
    rc = main(["deploy", "push", str(f.bundles[1]), f.hosts[0], *f.common, "--json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert rc == DeployError.exit_code and row["step"] == "install"
    assert "not newer than 2" in row["detail"]
    assert not list(Path("/tmp").glob(".edgeface-*-door-v1.efb"))  # the copy was removed


def test_wrong_host_key_is_refused(fleet: SimpleNamespace, capsys) -> None:
    f = fleet
    wrong = f.d / "wrong_known_hosts"
    other_pub = _keygen(f.d / "impostor_host_key")
    port = f.servers[0].port
    wrong.write_text(f"[127.0.0.1]:{port} {' '.join(other_pub.split()[:2])}\n")
    common = [*f.common]
    common[common.index("--known-hosts") + 1] = str(wrong)
    before = device(f.servers[0].root, f.trusted).current_version()
    rc = main(["deploy", "push", str(f.bundles[3]), f.hosts[0], *common, "--json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert rc == DeployError.exit_code and not row["ok"]
    assert "host key" in row["detail"].lower()
    assert device(f.servers[0].root, f.trusted).current_version() == before
    # an unknown host (empty known_hosts) is refused too, never trusted on first use
    empty = f.d / "empty_known_hosts"
    empty.write_text("")
    common[common.index("--known-hosts") + 1] = str(empty)
    rc = main(["deploy", "push", str(f.bundles[3]), f.hosts[0], *common, "--json"])
    row = json.loads(capsys.readouterr().out)[0]
    assert rc == DeployError.exit_code and "host key" in row["detail"].lower()
    assert device(f.servers[0].root, f.trusted).current_version() == before
