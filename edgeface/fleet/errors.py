"""Errors of the fleet side (MQTT link, signed changes, collection)."""

from __future__ import annotations

from edgeface.errors import EdgefaceError


class FleetError(EdgefaceError):
    """A fleet operation failed: broker unreachable, bad key, refused change, broken chain."""

    exit_code = 14


class RefusedMessage(FleetError):
    """A fleet message that a device must not act on (unsigned, forged, replayed, expired...).

    ``reason`` is a short machine word for the ``refused`` report (``bad_signature``,
    ``replayed``, ``out_of_order``, ``embedder_mismatch``, ``expired``, ``malformed``...).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
