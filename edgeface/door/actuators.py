"""Door actuators behind one interface, and the fail-secure wrapper the daemon always uses.

Fail-secure has two layers:

1. **Hardware/kernel** (the only layer that survives SIGKILL, OOM-kill or a power cut of the
   SoC): "locked" is the *de-energized* state. The relay is energized only while the process
   holds the GPIO line; when the process dies for any reason the kernel releases the line,
   the output returns to its inactive level and the relay drops. :class:`FileRelayActuator`
   models the same contract for tests: "unlocked" is only true while a live process holds an
   ``flock`` on the relay file, which the kernel drops on process death.
2. **Software** (:class:`FailSecureActuator`): every exception path, signal and ``atexit`` calls
   ``lock()``; an unlock is always bounded by a timer thread that re-locks even if the frame
   loop is stuck in a camera read or a model call.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeface.door.actuator_config import DEFAULT_GPIO_CHIP, ActuatorConfig, parse_actuator
from edgeface.errors import EdgefaceError

log = logging.getLogger("edgeface.door")


class ActuatorError(EdgefaceError):
    """The relay/command could not be driven (GPIO busy, command failed, no permission)."""

    exit_code = 13


class Actuator(ABC):
    """A lock. ``lock`` must be idempotent and safe to call at any time, from any thread."""

    kind = "abstract"

    @abstractmethod
    def lock(self) -> None: ...

    @abstractmethod
    def unlock(self) -> None: ...

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the hardware, leaving it locked."""

    def close(self) -> None:
        """Release the hardware, leaving it locked."""
        self.lock()

    def describe(self) -> str:
        return self.kind


class DryRunActuator(Actuator):
    """Logs instead of switching anything: first installs, demos, tests."""

    kind = "dryrun"

    def __init__(self) -> None:
        self.unlocked = False
        self.history: list[tuple[float, str]] = []

    def lock(self) -> None:
        if self.unlocked or not self.history:
            log.info("dry run: LOCK")
        self.unlocked = False
        self.history.append((time.monotonic(), "lock"))

    def unlock(self) -> None:
        log.info("dry run: UNLOCK")
        self.unlocked = True
        self.history.append((time.monotonic(), "unlock"))


class FileRelayActuator(Actuator):
    """A relay simulated by a file, with the de-energized-means-locked contract of real GPIO.

    While unlocked the process holds an exclusive ``flock`` on the file and the file says
    ``unlocked <pid>``. :func:`read_relay_state` reports "unlocked" only if the file says so
    *and* someone holds the lock; the kernel drops the lock when the holder dies (also on
    SIGKILL), so a killed daemon reads as "locked", exactly like a released GPIO line.
    The descriptor is close-on-exec, so a child process cannot keep the relay energized.
    """

    kind = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self.unlocked = False

    def describe(self) -> str:
        return f"file relay {self.path}"

    def open(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise ActuatorError(f"{self.describe()}: cannot open ({exc.strerror})") from exc
            self._write("locked\n")

    def _write(self, text: str) -> None:
        assert self._fd is not None
        data = text.encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def unlock(self) -> None:
        self.open()
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ActuatorError(f"{self.describe()}: held by another process") from exc
        self._write(f"unlocked {os.getpid()}\n")  # energize only after holding the line
        self.unlocked = True

    def lock(self) -> None:
        if self._fd is None:
            return
        self._write("locked\n")
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.unlocked = False

    def close(self) -> None:
        if self._fd is not None:
            self.lock()
            os.close(self._fd)
            self._fd = None


def read_relay_state(path: str | Path) -> str:
    """What a relay wired to :class:`FileRelayActuator` would do: "locked" or "unlocked"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "locked"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        text = os.pread(fd, 64, 0).decode(errors="replace")
    finally:
        os.close(fd)
    return "unlocked" if held and text.startswith("unlocked") else "locked"


class CommandActuator(Actuator):
    """Runs a command to unlock and another to lock (an HTTP call to a controller, MQTT, ...).

    Commands are argument lists run without a shell, with a timeout. Whether a dead daemon
    leaves this door locked depends on the controller: configure it to re-lock on its own
    after a pulse (most access controllers have a "relock time"), and say so in the config.
    """

    kind = "command"

    def __init__(self, unlock_command: list[str], lock_command: list[str], timeout_s: float = 5.0):
        self.unlock_command = unlock_command
        self.lock_command = lock_command
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"command hook ({self.unlock_command[0]})"

    def _run(self, argv: list[str]) -> None:
        try:
            subprocess.run(argv, check=True, timeout=self.timeout_s, capture_output=True)
        except FileNotFoundError as exc:
            raise ActuatorError(f"{self.describe()}: {argv[0]} not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise ActuatorError(f"{self.describe()}: {argv[0]} timed out") from exc
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace").strip().splitlines()
            tail = f": {err[-1]}" if err else ""
            raise ActuatorError(
                f"{self.describe()}: {argv[0]} exited {exc.returncode}{tail}"
            ) from exc

    def unlock(self) -> None:
        self._run(self.unlock_command)

    def lock(self) -> None:
        self._run(self.lock_command)


class GpiozeroActuator(Actuator):
    """A relay on a Raspberry Pi GPIO pin through gpiozero (``pi`` extra).

    Wire it fail-secure: the lock opens only while the relay coil is energized (active =
    unlocked), and a pull-down keeps the driver input low when the pin floats after the
    process exits (gpiozero returns pins to inputs on close).
    """

    kind = "gpiozero"

    def __init__(self, pin: int | str, active_high: bool = True, module: Any = None) -> None:
        self.pin = pin
        self.active_high = active_high
        self._module = module
        self._dev: Any = None

    def describe(self) -> str:
        return f"gpiozero relay on pin {self.pin}"

    def open(self) -> None:
        if self._dev is not None:
            return
        mod = self._module
        if mod is None:
            try:
                import gpiozero as mod  # type: ignore[import-not-found, no-redef]
            except ImportError as exc:
                raise ActuatorError(
                    f"{self.describe()}: gpiozero is not installed (pip install 'edgeface[pi]')"
                ) from exc
        try:
            self._dev = mod.OutputDevice(
                self.pin, active_high=self.active_high, initial_value=False
            )
        except Exception as exc:
            raise ActuatorError(f"{self.describe()}: cannot claim the pin ({exc})") from exc

    def unlock(self) -> None:
        self.open()
        self._dev.on()

    def lock(self) -> None:
        if self._dev is not None:
            self._dev.off()

    def close(self) -> None:
        if self._dev is not None:
            try:
                self._dev.off()
            finally:
                self._dev.close()
                self._dev = None


class GpiodActuator(Actuator):
    """A relay on any Linux GPIO chip through libgpiod v2 (``gpio`` extra): Jetson, Pi 5, ...

    The line is requested as an output whose initial value is *inactive* (locked); the kernel
    releases the request when the process dies, and the line returns to its default.
    """

    kind = "gpiod"

    def __init__(
        self,
        chip: str = DEFAULT_GPIO_CHIP,
        line: int = 17,
        active_low: bool = False,
        module: Any = None,
    ) -> None:
        self.chip = chip
        self.line = line
        self.active_low = active_low
        self._module = module
        self._req: Any = None
        self._value: Any = None

    def describe(self) -> str:
        return f"gpiod relay on {self.chip} line {self.line}"

    def open(self) -> None:
        if self._req is not None:
            return
        gpiod = self._module
        if gpiod is None:
            try:
                import gpiod  # type: ignore[import-not-found, no-redef]
            except ImportError as exc:
                raise ActuatorError(
                    f"{self.describe()}: gpiod is not installed (pip install 'edgeface[gpio]')"
                ) from exc
        value = gpiod.line.Value
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.OUTPUT,
            output_value=value.INACTIVE,
            active_low=self.active_low,
        )
        try:
            self._req = gpiod.request_lines(
                self.chip, consumer="edgeface-door", config={self.line: settings}
            )
        except OSError as exc:
            raise ActuatorError(f"{self.describe()}: cannot request the line ({exc})") from exc
        self._value = value

    def unlock(self) -> None:
        self.open()
        self._req.set_value(self.line, self._value.ACTIVE)

    def lock(self) -> None:
        if self._req is not None:
            self._req.set_value(self.line, self._value.INACTIVE)

    def close(self) -> None:
        if self._req is not None:
            try:
                self.lock()
            finally:
                self._req.release()
                self._req = None


class FailSecureActuator:
    """Wraps an actuator so that nothing can leave the door unlocked.

    * ``unlock(duration_s)`` starts a timer thread that re-locks after ``duration_s``, whatever
      the frame loop is doing; the daemon's own re-lock is then just the normal path.
    * ``lock()`` never raises: it retries, logs and reports failure through ``lock_failures``
      (the daemon exits non-zero on a failed lock, so systemd restarts it and the kernel
      releases the GPIO line in between).
    * An ``atexit`` hook locks on interpreter exit. Calls are serialized by a re-entrant lock,
      so a signal handler running ``lock()`` in the middle of ``unlock()`` cannot deadlock.
    """

    def __init__(
        self,
        inner: Actuator,
        *,
        max_unlock_s: float = 60.0,
        timer_factory: Callable[[float, Callable[[], None]], Any] = threading.Timer,
    ) -> None:
        self.inner = inner
        self.max_unlock_s = max_unlock_s
        self.timer_factory = timer_factory
        self.unlocked = False
        self.lock_failures = 0
        self._mutex = threading.RLock()
        self._timer: Any = None
        self._closed = False
        atexit.register(self.close)

    def describe(self) -> str:
        return self.inner.describe()

    def open(self) -> None:
        with self._mutex:
            if self._closed:  # re-opened after close(): guard the exit again
                self._closed = False
                atexit.register(self.close)
            self.inner.open()
            self.lock()

    def unlock(self, duration_s: float) -> None:
        duration_s = min(duration_s, self.max_unlock_s)
        with self._mutex:
            if self._closed:
                raise ActuatorError(f"{self.describe()}: closed")
            self._cancel_timer()
            timer = self.timer_factory(duration_s, self.lock)
            with contextlib.suppress(AttributeError):
                timer.daemon = True
            self._timer = timer
            try:
                self.inner.unlock()
                self.unlocked = True
            except BaseException:
                self.lock()
                raise
            timer.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            with contextlib.suppress(Exception):
                self._timer.cancel()
            self._timer = None

    def lock(self) -> bool:
        """Lock; True on success. Never raises."""
        with self._mutex:
            self._cancel_timer()
            for attempt in range(3):
                try:
                    self.inner.lock()
                    self.unlocked = False
                    return True
                except Exception as exc:  # a lock failure must not escape into the caller
                    log.error("%s: lock attempt %d failed: %s", self.describe(), attempt + 1, exc)
                    time.sleep(0.05 * (attempt + 1))
            self.lock_failures += 1
            return False

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self.lock()
            try:
                self.inner.close()
            except Exception as exc:
                log.error("%s: close failed: %s", self.describe(), exc)
            atexit.unregister(self.close)


# --- configuration ---------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[..., Actuator]] = {
    "dryrun": DryRunActuator,
    "file": FileRelayActuator,
    "command": CommandActuator,
    "gpiozero": GpiozeroActuator,
    "gpiod": GpiodActuator,
}


def make_actuator(cfg: ActuatorConfig | Mapping[str, Any]) -> Actuator:
    """Build (not yet open) the actuator of ``[actuator]`` (a table is checked first)."""
    config = cfg if isinstance(cfg, ActuatorConfig) else parse_actuator(cfg)
    return _BUILDERS[config.kind](**config.options())
