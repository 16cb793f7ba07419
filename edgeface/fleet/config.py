"""The ``[mqtt]`` section shared by the door and the kiosk configs (and the operator's).

Parsed with the door config's :class:`~edgeface.door.config.Section` (typed, key-naming
errors, unknown keys refused), so ``edgeface door --check`` catches a misspelt key here too.
A unit without an ``[mqtt]`` section never opens a network socket.

Example::

    [mqtt]
    host = "broker.lan"
    port = 8883
    device_id = "door-lobby"
    password_credential = "edgeface-mqtt.password"   # or password_file = "/etc/edgeface/mqtt.pw"
    tls = true
    ca_file = "/etc/edgeface/mqtt-ca.pem"
    operator_public_key = "/etc/edgeface/operator.pub"
    fleet_key_credential = "edgeface-fleet.key"
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
TOPIC_CHARS = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection, identity, and what the unit publishes or accepts."""

    host: str
    device_id: str
    port: int = 1883
    username: str | None = None  # default: the device id
    password_file: Path | None = None
    password_credential: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    qos: int = 1
    topic_prefix: str = ""  # default: edgeface/<device_id>
    fleet_topic: str = "edgeface/fleet"
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    #: records waiting to be published; the oldest is dropped when full (never blocks the door)
    queue_size: int = 1000
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    #: put enrolled display names into events and state (else identity ids only)
    display_names: bool = False
    state_interval_s: float = 30.0
    #: Ed25519 public key of the operator; without it the unit accepts no changes or commands
    operator_public_key: Path | None = None
    fleet_key_file: Path | None = None
    fleet_key_credential: str | None = None
    #: where the unit remembers the last applied change and command (sequence numbers)
    state_dir: Path = Path("/var/lib/edgeface/fleet")
    #: remote unlock is refused unless this is true; then it is still signed and short-lived
    remote_unlock: bool = False
    remote_unlock_max_s: float = 5.0

    @property
    def prefix(self) -> str:
        return self.topic_prefix or f"edgeface/{self.device_id}"

    @property
    def user(self) -> str:
        return self.username or self.device_id

    @property
    def accepts_fleet(self) -> bool:
        return self.operator_public_key is not None

    def password(self) -> str | None:
        """From the file or the systemd credential; None when neither is configured."""
        if self.password_credential:
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise ConfigError(
                    f"mqtt.password_credential: $CREDENTIALS_DIRECTORY is not set "
                    f"(LoadCredential={self.password_credential}:... in the unit)"
                )
            path = Path(base) / self.password_credential
        elif self.password_file:
            path = self.password_file
        else:
            return None
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mqtt: cannot read the password from {path} ({exc})") from exc
        if not text:
            raise ConfigError(f"mqtt: password file {path} is empty")
        return text

    def fleet_key(self) -> bytes:
        """The 256-bit key templates travel under (see docs/fleet.md, trust model)."""
        from edgeface.gallery import keys

        if self.fleet_key_credential:
            return keys.load_systemd_credential(self.fleet_key_credential).key
        if self.fleet_key_file:
            return keys.load_key_file(self.fleet_key_file).key
        raise ConfigError("mqtt.fleet_key_file: required with operator_public_key")


def _topic(v: str) -> str | None:
    if not v or v.startswith("/") or v.endswith("/") or not TOPIC_CHARS.match(v):
        return "must be a topic without wildcards, leading or trailing '/'"
    return None


def parse_mqtt(s: Any, base: Path) -> MqttConfig:
    """Build an :class:`MqttConfig` from a door-config ``Section`` named ``mqtt``."""
    from edgeface.schema import non_negative, positive

    d = MqttConfig(host="", device_id="")

    def path(key: str) -> Path | None:
        v = s.get(key, str)
        return (base / v) if v else None

    device_id = s.get(
        "device_id",
        str,
        required=True,
        check=_device_id,
    )
    cfg = MqttConfig(
        host=s.get("host", str, required=True, check=lambda v: None if v else "must not be empty"),
        device_id=device_id,
        port=s.get("port", int, 8883 if s.raw.get("tls") else 1883, check=_port),
        username=s.get("username", str),
        password_file=path("password_file"),
        password_credential=s.get("password_credential", str),
        tls=s.get("tls", bool, d.tls),
        ca_file=path("ca_file"),
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        qos=s.get("qos", int, d.qos, check=lambda v: None if v in (0, 1, 2) else "0, 1 or 2"),
        topic_prefix=s.get("topic_prefix", str, "", check=_topic),
        fleet_topic=s.get("fleet_topic", str, d.fleet_topic, check=_topic),
        keepalive_s=s.get("keepalive_s", int, d.keepalive_s, check=positive),
        reconnect_min_s=s.get("reconnect_min_s", float, d.reconnect_min_s, check=positive),
        reconnect_max_s=s.get("reconnect_max_s", float, d.reconnect_max_s, check=positive),
        queue_size=s.get("queue_size", int, d.queue_size, check=positive),
        discovery=s.get("discovery", bool, d.discovery),
        discovery_prefix=s.get("discovery_prefix", str, d.discovery_prefix, check=_topic),
        display_names=s.get("display_names", bool, d.display_names),
        state_interval_s=s.get("state_interval_s", float, d.state_interval_s, check=positive),
        operator_public_key=path("operator_public_key"),
        fleet_key_file=path("fleet_key_file"),
        fleet_key_credential=s.get("fleet_key_credential", str),
        state_dir=base / s.get("state_dir", str, str(d.state_dir)),
        remote_unlock=s.get("remote_unlock", bool, d.remote_unlock),
        remote_unlock_max_s=s.get(
            "remote_unlock_max_s", float, d.remote_unlock_max_s, check=non_negative
        ),
    )
    if cfg.password_file and cfg.password_credential:
        raise ConfigError("mqtt.password_file: give password_file or password_credential")
    if cfg.fleet_key_file and cfg.fleet_key_credential:
        raise ConfigError("mqtt.fleet_key_file: give fleet_key_file or fleet_key_credential")
    if cfg.reconnect_max_s < cfg.reconnect_min_s:
        raise ConfigError("mqtt.reconnect_max_s: must be >= mqtt.reconnect_min_s")
    if (cfg.cert_file is None) != (cfg.key_file is None):
        raise ConfigError("mqtt.cert_file: a client certificate needs both cert_file and key_file")
    if (cfg.ca_file or cfg.cert_file) and not cfg.tls:
        raise ConfigError("mqtt.tls: ca_file/cert_file given but tls = false")
    if cfg.accepts_fleet and not (cfg.fleet_key_file or cfg.fleet_key_credential):
        raise ConfigError("mqtt.fleet_key_file: operator_public_key needs the fleet key too")
    if cfg.remote_unlock and not cfg.accepts_fleet:
        raise ConfigError("mqtt.remote_unlock: needs operator_public_key (commands are signed)")
    if cfg.remote_unlock_max_s > 30:
        raise ConfigError(f"mqtt.remote_unlock_max_s: at most 30 s, got {cfg.remote_unlock_max_s}")
    return cfg


def _device_id(v: str) -> str | None:
    if not DEVICE_ID.match(v):
        return "letters, digits, _ . - (max 63)"
    if v == "fleet":
        return "'fleet' is the operator's topic"
    return None


def _port(v: int) -> str | None:
    return None if 0 < v < 65536 else "must be 1..65535"


def load_mqtt_section(raw: Any, base: Path, name: str = "mqtt") -> MqttConfig | None:
    """For configs other than the door's (kiosk, operator): None when the table is absent."""
    from edgeface.schema import Section

    if raw is None:
        return None
    s = Section(raw, name)
    cfg = parse_mqtt(s, base)
    s.finish()
    return cfg
