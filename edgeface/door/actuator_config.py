"""``[actuator]``: a typed :class:`ActuatorConfig`, checked with the configuration's validator.

Each kind takes its own keys (``ACTUATOR_KEYS``); a key of another kind, a wrong type or a
missing required key is a :class:`ConfigError` naming it (``actuator.line: required for kind
'gpiod'``), read through :class:`edgeface.schema.Section` like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError
from edgeface.schema import Section, str_list

#: the GPIO character device a gpiod relay uses when ``chip`` is not given
DEFAULT_GPIO_CHIP = "/dev/gpiochip0"

#: kind -> accepted keys -> allowed TOML types (bool is told apart from int)
ACTUATOR_KEYS: dict[str, dict[str, tuple[type, ...]]] = {
    "dryrun": {},
    "file": {"path": (str,)},
    "command": {"unlock_command": (list,), "lock_command": (list,), "timeout_s": (float,)},
    "gpiozero": {"pin": (int, str), "active_high": (bool,)},
    "gpiod": {"chip": (str,), "line": (int,), "active_low": (bool,)},
}
_REQUIRED = {
    "file": ("path",),
    "command": ("unlock_command", "lock_command"),
    "gpiozero": ("pin",),
    "gpiod": ("line",),
}


@dataclass(frozen=True)
class ActuatorConfig:
    """What drives the lock. Keys a kind does not take stay None; a key left None is not
    passed to the actuator, so its own default applies."""

    kind: str
    #: file: the relay state file (tests and demos)
    path: str | None = None
    #: command: argv run to unlock / lock, and how long each may take
    unlock_command: tuple[str, ...] | None = None
    lock_command: tuple[str, ...] | None = None
    timeout_s: float | None = None
    #: gpiozero: BCM pin number or name, and whether "unlocked" drives it high
    pin: int | str | None = None
    active_high: bool | None = None
    #: gpiod: chip device (default ``DEFAULT_GPIO_CHIP``), line offset, polarity
    chip: str | None = None
    line: int | None = None
    active_low: bool | None = None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for the kind's actuator class: the keys that were given."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def with_base(self, base: Path) -> ActuatorConfig:
        """Relative ``path`` resolved against ``base`` (the config file's folder)."""
        return replace(self, path=str(base / self.path)) if self.path else self


def parse_actuator(raw: Any, section: str = "actuator") -> ActuatorConfig:
    """Check an actuator table; every problem is a ConfigError naming the key."""
    s = Section(raw, section)
    kind = s.raw.get("kind")
    if kind not in ACTUATOR_KEYS:
        known = ", ".join(sorted(ACTUATOR_KEYS))
        raise ConfigError(f"{section}.kind: one of {known}, got {kind!r}")
    s.used.add("kind")
    keys = ACTUATOR_KEYS[kind]
    values: dict[str, Any] = {}
    for key in s.raw:
        if key in keys:
            check = str_list if keys[key] == (list,) else None
            value = s.get(key, keys[key], check=check)
            values[key] = tuple(value) if isinstance(value, list) else value
    s.finish(f" for kind '{kind}'")
    for key in _REQUIRED.get(kind, ()):
        if key not in values:
            raise ConfigError(f"{section}.{key}: required for kind '{kind}'")
    return ActuatorConfig(kind=kind, **values)
