"""Actuators: the file relay keeps the de-energized-means-locked contract even across SIGKILL;
the fail-secure wrapper re-locks on a timer, never raises from lock(), and GPIO drivers request
their line inactive (checked against fake gpiozero/gpiod modules with the real call shapes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from doubles import FakeClock, ManualTimer

from edgeface.door.actuators import (
    ActuatorError,
    CommandActuator,
    DryRunActuator,
    FailSecureActuator,
    FileRelayActuator,
    GpiodActuator,
    GpiozeroActuator,
    make_actuator,
    read_relay_state,
)


def test_file_relay_states(tmp_path: Path) -> None:
    relay = tmp_path / "relay"
    a = FileRelayActuator(relay)
    assert read_relay_state(relay) == "locked"  # no file: de-energized
    a.open()
    assert read_relay_state(relay) == "locked"
    a.unlock()
    assert read_relay_state(relay) == "unlocked"
    a.lock()
    assert read_relay_state(relay) == "locked"
    a.unlock()
    a.close()
    assert read_relay_state(relay) == "locked"


HOLDER = """
import sys, time
from edgeface.door.actuators import FileRelayActuator
a = FileRelayActuator(sys.argv[1])
a.unlock()
print("unlocked", flush=True)
time.sleep(60)
"""


def test_sigkilled_holder_leaves_the_relay_locked(tmp_path: Path) -> None:
    relay = tmp_path / "relay"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(relay)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"unlocked"
        assert read_relay_state(relay) == "unlocked"
        assert relay.read_text().startswith("unlocked")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the file still *says* unlocked (no code ran), but nobody holds the line: locked
    assert relay.read_text().startswith("unlocked")
    assert read_relay_state(relay) == "locked"


def test_fail_secure_relocks_on_its_own_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    timers = ManualTimer(clock)
    fs = FailSecureActuator(FileRelayActuator(tmp_path / "r"), timer_factory=timers.factory)
    fs.open()
    fs.unlock(5.0)
    assert read_relay_state(tmp_path / "r") == "unlocked" and fs.unlocked
    clock.advance(4.9)
    assert timers.fire_due() == 0
    clock.advance(0.2)
    assert timers.fire_due() == 1
    assert read_relay_state(tmp_path / "r") == "locked" and not fs.unlocked
    fs.close()


def test_fail_secure_bounds_unlock_time_with_a_real_timer(tmp_path: Path) -> None:
    fs = FailSecureActuator(FileRelayActuator(tmp_path / "r"), max_unlock_s=0.2)
    fs.open()
    fs.unlock(30.0)  # asks for 30 s, capped at 0.2 s
    assert read_relay_state(tmp_path / "r") == "unlocked"
    deadline = time.monotonic() + 5
    while read_relay_state(tmp_path / "r") != "locked" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_relay_state(tmp_path / "r") == "locked"
    fs.close()


class Flaky(DryRunActuator):
    def __init__(self, lock_failures: int, unlock_fails: bool = False) -> None:
        super().__init__()
        self.fail_left = lock_failures
        self.unlock_fails = unlock_fails

    def lock(self) -> None:
        if self.fail_left > 0:
            self.fail_left -= 1
            raise OSError("relay driver hiccup")
        super().lock()

    def unlock(self) -> None:
        if self.unlock_fails:
            self.unlocked = True  # half-done: the coil got current, then the driver failed
            raise OSError("i2c error")
        super().unlock()


def test_lock_retries_and_never_raises() -> None:
    fs = FailSecureActuator(Flaky(lock_failures=2))
    assert fs.lock() is True and fs.lock_failures == 0
    broken = FailSecureActuator(Flaky(lock_failures=99))
    assert broken.lock() is False and broken.lock_failures == 1
    broken.inner = DryRunActuator()  # repaired, so the atexit guard does not log at exit
    broken.close()


def test_a_failed_unlock_leaves_it_locked() -> None:
    inner = Flaky(lock_failures=0, unlock_fails=True)
    fs = FailSecureActuator(inner)
    with pytest.raises(OSError):
        fs.unlock(3.0)
    assert inner.unlocked is False and fs.unlocked is False


def test_command_actuator(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = tmp_path / "door.sh"
    script.write_text(
        f'#!/bin/sh\necho "$1" >> {log}\n[ "$1" != fail ] || {{ echo boom >&2; exit 3; }}\n'
    )
    script.chmod(0o755)
    a = CommandActuator([str(script), "open"], [str(script), "close"])
    a.unlock()
    a.lock()
    assert log.read_text().split() == ["open", "close"]
    with pytest.raises(ActuatorError, match="exited 3: boom"):
        CommandActuator([str(script), "fail"], [str(script), "close"]).unlock()
    with pytest.raises(ActuatorError, match="not found"):
        CommandActuator(["/nonexistent/door"], ["x"]).unlock()
    slow = CommandActuator(["sleep", "5"], ["true"], timeout_s=0.2)
    with pytest.raises(ActuatorError, match="timed out"):
        slow.unlock()


def test_gpiozero_drives_an_output_that_starts_off() -> None:
    made: dict[str, object] = {}

    class OutputDevice:
        def __init__(self, pin: int, *, active_high: bool, initial_value: bool) -> None:
            made.update(pin=pin, active_high=active_high, initial=initial_value)
            self.value = initial_value
            self.closed = False

        def on(self) -> None:
            self.value = True

        def off(self) -> None:
            self.value = False

        def close(self) -> None:
            self.closed = True

    a = GpiozeroActuator(17, module=types.SimpleNamespace(OutputDevice=OutputDevice))
    a.open()
    assert made == {"pin": 17, "active_high": True, "initial": False}
    a.unlock()
    assert a._dev.value is True
    dev = a._dev
    a.close()
    assert dev.value is False and dev.closed


def test_gpiod_requests_the_line_inactive_and_releases_it() -> None:
    calls: list[tuple] = []

    class Value:
        ACTIVE, INACTIVE = "ACTIVE", "INACTIVE"

    class Direction:
        OUTPUT = "OUTPUT"

    class LineSettings:
        def __init__(self, **kw: object) -> None:
            self.kw = kw

    class Request:
        def set_value(self, line: int, value: str) -> None:
            calls.append(("set", line, value))

        def release(self) -> None:
            calls.append(("release",))

    def request_lines(chip: str, *, consumer: str, config: dict) -> Request:
        ((line, settings),) = config.items()
        calls.append(("request", chip, consumer, line, settings.kw))
        return Request()

    gpiod = types.SimpleNamespace(
        LineSettings=LineSettings,
        request_lines=request_lines,
        line=types.SimpleNamespace(Value=Value, Direction=Direction),
    )
    a = GpiodActuator("/dev/gpiochip4", 23, module=gpiod)
    a.unlock()
    a.close()
    assert calls[0] == (
        "request",
        "/dev/gpiochip4",
        "edgeface-door",
        23,
        {"direction": "OUTPUT", "output_value": "INACTIVE", "active_low": False},
    )
    assert calls[1:] == [("set", 23, "ACTIVE"), ("set", 23, "INACTIVE"), ("release",)]


def test_missing_gpio_libraries_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(ActuatorError, match=r"edgeface\[pi\]"):
        GpiozeroActuator(17).open()
    with pytest.raises(ActuatorError, match=r"edgeface\[gpio\]"):
        GpiodActuator(line=17).open()


def test_factory(tmp_path: Path) -> None:
    assert isinstance(make_actuator({"kind": "dryrun"}), DryRunActuator)
    assert isinstance(
        make_actuator({"kind": "file", "path": str(tmp_path / "r")}), FileRelayActuator
    )
    g = make_actuator({"kind": "gpiod", "line": 5, "chip": "/dev/gpiochip1"})
    assert isinstance(g, GpiodActuator) and g.line == 5
