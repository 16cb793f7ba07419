"""The one validator of edgeface's TOML configuration: typed, key-naming access to a table.

Door, kiosk, fleet, camera and actuator sections are all read through :class:`Section`, so a
wrong type, a bad value and a misspelt key produce the same one-line :class:`ConfigError`
everywhere (``policy.k: must be <= policy.n``, ``camera.widht: unknown key``). It sits below
every layer (it imports only :mod:`edgeface.errors`) so the camera and actuator code can use
it without importing the door.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from edgeface.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

T = TypeVar("T")

Check = Callable[[Any], "str | None"]


class Section:
    """Typed, key-naming access to one TOML table; ``finish`` rejects keys nobody read."""

    def __init__(self, raw: Any, name: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: expected a table, got {type(raw).__name__}")
        self.raw = dict(raw)
        self.name = name
        self.used: set[str] = set()

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
        check: Check | None = None,
    ) -> Any:
        """``key``'s value, checked against ``kind`` (an int is taken for a float) and ``check``."""
        self.used.add(key)
        where = f"{self.name}.{key}"
        if key not in self.raw:
            if required:
                raise ConfigError(f"{where}: required")
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = (bool in kinds) if isinstance(value, bool) else isinstance(value, kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{where}: expected {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        if check is not None and (problem := check(value)):
            raise ConfigError(f"{where}: {problem}, got {value!r}")
        return value

    def finish(self, hint: str = "") -> None:
        """Reject keys nobody read (``hint`` follows the message, e.g. the allowed keys)."""
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(f"{self.name}.{unknown[0]}: unknown key{hint}")


def positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def unit_interval(v: float) -> str | None:
    return None if 0 < v < 1 else "must be between 0 and 1 (exclusive)"


def str_list(v: list[Any]) -> str | None:
    if not v or not all(isinstance(x, str) and x for x in v):
        return "must be a non-empty list of strings"
    return None


def read_toml(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The tables of the TOML file at ``path`` and the folder its relative paths are read
    from; a missing, unreadable or invalid file is one :class:`ConfigError` line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from exc
    try:
        return tomllib.loads(text), p.resolve().parent
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from exc


def load_toml_config(path: str | Path, parse: Callable[..., T]) -> T:
    """``parse(raw, source=, base=)`` of the file at ``path``; its errors name the file."""
    raw, base = read_toml(path)
    try:
        return parse(raw, source=str(path), base=base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
