"""paho-mqtt (2.x, callback API version 2) behind a bounded queue, on threads of its own.

Why a queue in front of paho: the door's loop must never wait for the network. ``publish``
here only appends to a bounded deque (the oldest item is dropped when it is full, and counted)
and wakes the sender thread; paho's own network thread (``loop_start``) connects, reconnects
with exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``), and talks to
the broker. A broker that hangs, refuses or vanishes therefore costs the caller nothing.

Items wait in the deque while the link is down and are handed to paho once it is connected
again. Retained state is rebuilt by the caller on every connect (``on_connect``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeface.fleet.config import MqttConfig
from edgeface.fleet.errors import FleetError

log = logging.getLogger("edgeface.fleet")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: called from paho's thread once the broker acknowledged it (QoS >= 1)
    on_ack: Callable[[], None] | None = None


MessageHandler = Callable[[str, bytes, bool], None]


def make_client(cfg: MqttConfig, *, clean_session: bool = True) -> Any:
    """A configured ``paho.mqtt.client.Client`` (not connected): credentials, TLS, backoff."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:  # pragma: no cover - the mqtt extra is missing
        raise FleetError(
            "MQTT needs paho-mqtt: pip install 'edgeface[mqtt]' (or remove [mqtt])"
        ) from exc
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=cfg.device_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    password = cfg.password()
    if password is not None or cfg.username:
        client.username_pw_set(cfg.user, password)
    if cfg.tls:
        try:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise FleetError(f"mqtt: TLS setup failed ({exc})") from exc
    client.reconnect_delay_set(
        max(1, round(cfg.reconnect_min_s)), max(1, round(cfg.reconnect_max_s))
    )
    return client


class MqttLink:
    """One device's connection: LWT, subscriptions restored on every connect, a bounded queue."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        will: tuple[str, bytes] | None = None,
        subscriptions: list[tuple[str, int]] | None = None,
        on_message: MessageHandler | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.subscriptions = list(subscriptions or [])
        self.on_message = on_message
        self.on_connect = on_connect
        self.client = make_client(cfg)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message
        self.client.on_publish = self._published
        self.queue: collections.deque[Outgoing] = collections.deque()
        self.dropped = 0
        self.connects = 0
        self.connected = threading.Event()
        self._wake = threading.Condition()
        self._closing = False
        self._acks: dict[int, Callable[[], None]] = {}
        self._acks_mutex = threading.Lock()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Returns at once: connecting happens on paho's thread (retried with backoff)."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._sender.start()

    def close(self, final: list[Outgoing] | None = None, timeout: float = 2.0) -> None:
        """Send ``final`` (e.g. availability offline) if connected, then disconnect."""
        if final and self.connected.is_set():
            infos = [self.client.publish(o.topic, o.payload, o.qos, o.retain) for o in final]
            for info in infos:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout)
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self.client.disconnect()
        self.client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(timeout)

    # --- publishing (any thread, never blocks) --------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int | None = None,
        retain: bool = False,
        on_ack: Callable[[], None] | None = None,
    ) -> None:
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        item = Outgoing(topic, data, self.cfg.qos if qos is None else qos, retain, on_ack)
        with self._wake:
            if len(self.queue) >= self.cfg.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(item)
            self._wake.notify()

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and (not self.queue or not self.connected.is_set()):
                    self._wake.wait(1.0)
                if self._closing:
                    return
                item = self.queue.popleft()
            try:
                info = self.client.publish(item.topic, item.payload, item.qos, item.retain)
            except Exception as exc:  # a payload paho refuses: log it, keep going
                log.warning("mqtt: cannot publish to %s: %s", item.topic, exc)
                continue
            if info.rc != 0:  # not connected after all: put it back for the next connect
                with self._wake:
                    self.queue.appendleft(item)
                    self.connected.clear()
                continue
            if item.on_ack is not None:
                if item.qos == 0:
                    item.on_ack()
                else:
                    with self._acks_mutex:
                        self._acks[info.mid] = item.on_ack
                    if info.is_published():
                        self._published(self.client, None, info.mid, None, None)

    # --- paho callbacks (paho's thread) ---------------------------------------------------------

    def _connected(self, client: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning(
                "mqtt: %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason
            )
            return
        self.connects += 1
        log.info("mqtt: connected to %s:%s", self.cfg.host, self.cfg.port)
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos)
        if self.on_connect is not None:
            try:
                self.on_connect()
            except Exception as exc:
                log.warning("mqtt: on_connect handler failed: %s", exc)
        with self._wake:
            self.connected.set()
            self._wake.notify_all()

    def _disconnected(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason)

    def _message(self, _c: Any, _u: Any, msg: Any) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception as exc:  # never let one bad message kill paho's thread
            log.warning("mqtt: handling %s failed: %s", msg.topic, exc)

    def _published(self, _c: Any, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        with self._acks_mutex:
            cb = self._acks.pop(mid, None)
        if cb is not None:
            try:
                cb()
            except Exception as exc:
                log.warning("mqtt: ack handler failed: %s", exc)
