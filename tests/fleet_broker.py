"""A real Mosquitto for the fleet tests: 127.0.0.1, a free port, a password file and an ACL that
confines each device to its own topics (the operator alone may write ``edgeface/fleet/...``).

Debian's ``mosquitto`` package is installed by scripts/test.sh. The broker keeps retained
messages on disk (saved on every change), so a killed and restarted broker still has the log.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ACL = """\
# the operator: publishes the fleet log, snapshots and commands; reads every device
user operator
topic readwrite edgeface/#
topic read homeassistant/#

# Home Assistant: reads everything the doors publish, announces its own status
user homeassistant
topic read edgeface/#
topic read homeassistant/#
topic write homeassistant/status

# every device (username = device id): its own topics, the fleet log, its commands
pattern readwrite edgeface/%u/#
pattern read edgeface/fleet/log/+
pattern read edgeface/fleet/snapshot
pattern read edgeface/fleet/command/%u
pattern read edgeface/fleet/command/all
pattern write homeassistant/+/%u/+/config
pattern read homeassistant/status
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, root: Path, users: list[str]) -> None:
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed (scripts/test.sh installs it with apt)")
        self.root = root
        self.port = free_port()
        self.host = "127.0.0.1"
        self.passwords = {u: f"pw-{u}-{self.port}" for u in users}
        pwfile = root / "passwd"
        pwfile.write_text("")
        for user, pw in self.passwords.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(pwfile), user, pw], check=True, capture_output=True
            )
            (root / f"{user}.pw").write_text(pw + "\n")
        (root / "acl").write_text(ACL)
        (root / "data").mkdir(exist_ok=True)
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"""\
user root
listener {self.port} 127.0.0.1
allow_anonymous false
password_file {pwfile}
acl_file {root / "acl"}
persistence true
persistence_location {root / "data"}/
autosave_interval 1
autosave_on_changes true
max_queued_messages 100000
log_dest file {root / "mosquitto.log"}
log_type error
log_type warning
log_type notice
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def password_file(self, user: str) -> Path:
        return self.root / f"{user}.pw"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None:
                log = (self.root / "mosquitto.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mosquitto exited: {log}")
            time.sleep(0.05)
        pytest.fail("mosquitto did not start listening in 10 s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class HangingListener:
    """A TCP listener that accepts connections and never says a word (a hung broker)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)  # kept open, never read, never answered

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()


class Listener:
    """A Home Assistant-like client: records every message on the topics it subscribes to."""

    def __init__(self, broker: Broker, user: str, subscriptions: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-test")
        self.client.username_pw_set(user, broker.passwords[user])
        ready = threading.Event()

        def on_connect(c, _u, _f, reason, _p):
            for s in subscriptions:
                c.subscribe(s, 1)
            ready.set()

        def on_message(_c, _u, msg):
            with self.lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
