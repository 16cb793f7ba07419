"""Build a frame source from a config table: ``{kind = "opencv", device = "/dev/video0"}``.

Each kind registers a builder and the keys it accepts; unknown kinds and unknown or mistyped
keys become a :class:`ConfigError` naming the key (``camera.widht: unknown key``), so a typo in
``/etc/edgeface/door.toml`` is caught by ``--check`` instead of silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeface.camera.base import Clock, FrameSource
from edgeface.errors import ConfigError


@dataclass(frozen=True)
class SourceKind:
    builder: Callable[..., FrameSource]
    #: accepted keys -> allowed Python types (bool is checked separately from int)
    keys: Mapping[str, tuple[type, ...]]
    required: tuple[str, ...] = ()


def _opencv(**kw: Any) -> FrameSource:
    from edgeface.camera.opencv import OpenCVSource

    return OpenCVSource(kw.pop("device", 0), **kw)


def _video(**kw: Any) -> FrameSource:
    from edgeface.camera.opencv import VideoFileSource

    return VideoFileSource(kw.pop("path"), **kw)


def _images(**kw: Any) -> FrameSource:
    from edgeface.camera.replay import ImageDirectorySource

    return ImageDirectorySource(kw.pop("path"), **kw)


def _picamera2(**kw: Any) -> FrameSource:
    from edgeface.camera.picam import Picamera2Source

    return Picamera2Source(**kw)


_NUM = (int, float)
SOURCE_KINDS: dict[str, SourceKind] = {
    "opencv": SourceKind(
        _opencv,
        {"device": (int, str), "width": (int,), "height": (int,), "fps": _NUM, "name": (str,)},
    ),
    "video": SourceKind(
        _video, {"path": (str,), "loop": (bool,), "name": (str,)}, required=("path",)
    ),
    "images": SourceKind(
        _images,
        {"path": (str,), "fps": _NUM, "loop": (bool,), "name": (str,)},
        required=("path",),
    ),
    "picamera2": SourceKind(
        _picamera2,
        {"camera_num": (int,), "width": (int,), "height": (int,), "fps": _NUM, "name": (str,)},
    ),
}

#: keys the daemon reads from the camera table itself (not passed to the source)
COMMON_KEYS = {"kind", "reconnect_initial_s", "reconnect_max_s"}


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def validate_source_config(cfg: Mapping[str, Any], section: str = "camera") -> dict[str, Any]:
    """Check a camera table; return the keyword arguments for its builder."""
    kind = cfg.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{section}.kind: missing; one of {', '.join(sorted(SOURCE_KINDS))}")
    spec = SOURCE_KINDS.get(kind)
    if spec is None:
        known = ", ".join(sorted(SOURCE_KINDS))
        raise ConfigError(f"{section}.kind: unknown camera kind '{kind}'; one of {known}")
    kwargs: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in COMMON_KEYS:
            continue
        types = spec.keys.get(key)
        if types is None:
            allowed = ", ".join(sorted(set(spec.keys) | COMMON_KEYS))
            raise ConfigError(
                f"{section}.{key}: unknown key for kind '{kind}' (allowed: {allowed})"
            )
        if not _type_ok(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{section}.{key}: expected {names}, got {value!r}")
        if key in ("width", "height", "fps") and value <= 0:
            raise ConfigError(f"{section}.{key}: must be positive, got {value!r}")
        kwargs[key] = value
    for key in spec.required:
        if key not in kwargs:
            raise ConfigError(f"{section}.{key}: required for kind '{kind}'")
    return kwargs


def open_source(
    cfg: Mapping[str, Any], *, clock: Clock | None = None, section: str = "camera"
) -> FrameSource:
    """Create (not yet open) the source described by ``cfg``."""
    kwargs = validate_source_config(cfg, section)
    if clock is not None:
        kwargs["clock"] = clock
    return SOURCE_KINDS[str(cfg["kind"])].builder(**kwargs)
