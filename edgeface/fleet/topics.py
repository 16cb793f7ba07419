"""Topic names in one place (the table in docs/fleet.md lists the same)."""

from __future__ import annotations


def log_topic(fleet: str, seq: int) -> str:
    """Retained, one per gallery change; zero-padded so topic order is sequence order."""
    return f"{fleet}/log/{seq:010d}"


def log_filter(fleet: str) -> str:
    return f"{fleet}/log/+"


def snapshot_topic(fleet: str) -> str:
    return f"{fleet}/snapshot"


def command_topic(fleet: str, target: str) -> str:
    """``target`` is a device id or ``all``."""
    return f"{fleet}/command/{target}"


def audit_topic(prefix: str) -> str:
    return f"{prefix}/audit"


HA_STATUS = "homeassistant/status"
