"""The systemd notification protocol (``sd_notify``), without a dependency.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace); a
notification is one datagram of ``KEY=value`` lines. We send ``READY=1`` once the camera,
models and gallery are up (``Type=notify``), ``WATCHDOG=1`` from the frame loop (so a hung
loop, not just a dead process, gets restarted), ``STATUS=...`` for ``systemctl status``, and
``STOPPING=1``. Outside systemd every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable


class Notifier:
    def __init__(self, address: str | None = None, *, clock: Callable[[], float] = time.monotonic):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.clock = clock
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        #: systemd's watchdog timeout in seconds, when it asked this process to feed it
        self.watchdog_s: float | None = None
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = float("-inf")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram; False (never an exception) when it cannot be delivered."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self, *, force: bool = False) -> bool:
        """Ping the watchdog, at most every half timeout (systemd's recommendation)."""
        if self.watchdog_s is None and not force:
            return False
        now = self.clock()
        interval = (self.watchdog_s or 0.0) / 2
        if not force and now - self._last_ping < interval:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
