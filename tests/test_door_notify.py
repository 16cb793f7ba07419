"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from doubles import FakeClock

from edgeface.door.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_ready_status_stopping(listener, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.ready("watching camera")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching camera"
    assert n.status("door locked")
    assert sock.recv(4096) == b"STATUS=door locked"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_watchdog_pings_at_half_the_timeout(listener, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = listener
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    clock = FakeClock()
    n = Notifier(path, clock=clock)
    assert n.watchdog_s == 4.0
    sent = []
    for _ in range(50):  # 5 s of a 10 fps loop
        sent.append(n.watchdog())
        clock.advance(0.1)
    assert sum(sent) == 3  # at t=0, 2, 4
    assert sock.recv(64) == b"WATCHDOG=1"


def test_watchdog_for_another_pid_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("/nonexistent").watchdog_s is None


def test_abstract_namespace_socket() -> None:
    name = f"edgeface-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).notify("READY=1")
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False and n.watchdog() is False
    assert Notifier("/nonexistent/socket").notify("READY=1") is False  # never raises
