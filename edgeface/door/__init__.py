"""The door-access daemon: camera -> recognition -> k-of-n policy -> fail-secure relay + audit.

Modules, one job each: ``config`` (door.toml), ``identify`` (the Identifier protocol),
``policy`` (unlock decision), ``lockout`` (anti-hammering), ``actuators`` (relays, fail-secure
wrapper), ``audit`` (hash-chained log), ``notify`` (sd_notify), ``feed`` (frame dropping),
``inbox`` (camera events and the stop flag, shared by the camera and the loop),
``pipeline_identifier`` (FacePipeline + gallery -> Observation), ``daemon`` (the loop),
``service`` (wiring from config), ``health`` (``--check``).
"""

from edgeface.door.config import DoorConfig, load_config, parse_config
from edgeface.door.identify import Identifier, Observation

__all__ = ["DoorConfig", "Identifier", "Observation", "load_config", "parse_config"]
