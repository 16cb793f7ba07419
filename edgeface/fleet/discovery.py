"""Home Assistant MQTT discovery: retained ``config`` payloads for one door's entities.

HA reads ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``; every payload names
``unique_id``, ``device`` (so the entities group under one device card) and
``availability_topic`` (the door's retained online/offline, with the last will), and points
``state_topic`` at the door's retained state or its event topic.
"""

from __future__ import annotations

import json
from typing import Any

from edgeface.fleet.config import MqttConfig

#: what ``<prefix>/event`` carries in ``event_type`` (the HA ``event`` entity's event_types)
EVENT_TYPES = ("access_granted", "access_denied", "lockout", "fault", "lockdown", "remote_unlock")


def device_block(cfg: MqttConfig, software: str) -> dict[str, Any]:
    return {
        "identifiers": [f"edgeface_{cfg.device_id}"],
        "name": cfg.device_id,
        "manufacturer": "edgeface",
        "model": "edgeface door unit",
        "sw_version": software,
    }


def discovery_messages(cfg: MqttConfig, software: str) -> list[tuple[str, bytes]]:
    """(topic, retained JSON payload) for the event, relay, last-person and lockout entities."""
    dev = cfg.device_id
    node = dev.replace(".", "_")
    base = {
        "availability_topic": f"{cfg.prefix}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(cfg, software),
    }
    state = f"{cfg.prefix}/state"
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "event",
            "access",
            {
                "name": "Access",
                "state_topic": f"{cfg.prefix}/event",
                "event_types": list(EVENT_TYPES),
                "icon": "mdi:door",
            },
        ),
        (
            "binary_sensor",
            "relay",
            {
                "name": "Relay",
                "state_topic": state,
                "value_template": "{{ value_json.relay }}",
                "payload_on": "unlocked",
                "payload_off": "locked",
                "device_class": "lock",
            },
        ),
        (
            "sensor",
            "last_person",
            {
                "name": "Last person",
                "state_topic": state,
                "value_template": "{{ value_json.last_person }}",
                "icon": "mdi:account",
            },
        ),
        (
            "sensor",
            "lockout",
            {
                "name": "Lockout",
                "state_topic": state,
                "value_template": "{{ 'active' if value_json.lockout else 'clear' }}",
                "icon": "mdi:lock-alert",
            },
        ),
    ]
    out = []
    for component, obj, extra in entities:
        payload = {**base, **extra, "unique_id": f"edgeface_{node}_{obj}", "object_id": obj}
        topic = f"{cfg.discovery_prefix}/{component}/{node}/{obj}/config"
        out.append((topic, json.dumps(payload, sort_keys=True).encode()))
    return out
