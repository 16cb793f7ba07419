"""Many doors, one population: MQTT link, signed gallery changes, commands, audit collection.

* :mod:`~edgeface.fleet.config` - the ``[mqtt]`` section (door, kiosk, operator);
* :mod:`~edgeface.fleet.envelope` - signed (Ed25519) and encrypted (AES-256-GCM) messages;
* :mod:`~edgeface.fleet.apply` - a device's ordered, idempotent application of changes and
  commands (no MQTT in it: the benchmark's simulated doors run the same code);
* :mod:`~edgeface.fleet.link` - paho-mqtt on its own thread behind a bounded queue;
* :mod:`~edgeface.fleet.agent` - the device side (state, events, audit, discovery);
* :mod:`~edgeface.fleet.operator` and :mod:`~edgeface.fleet.collect` - the operator side.

paho-mqtt and cryptography are imported by these modules only (the ``mqtt`` extra); the base
install never imports them. Protocol and trust model: docs/fleet.md.
"""
