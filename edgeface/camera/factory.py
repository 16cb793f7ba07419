"""``[camera]``: a typed :class:`CameraConfig` and the source it builds.

A table such as ``{kind = "opencv", device = "/dev/video0"}`` is checked by :func:`parse_camera`
with the configuration's one validator (:class:`edgeface.schema.Section`).

Each kind registers a builder and the keys it accepts; unknown kinds and unknown or mistyped
keys become a :class:`ConfigError` naming the key (``camera.widht: unknown key``), so a typo in
``/etc/edgeface/door.toml`` is caught by ``--check`` instead of silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeface.camera.backoff import Backoff
from edgeface.camera.base import Clock, FrameSource
from edgeface.errors import ConfigError
from edgeface.schema import Section


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


@dataclass(frozen=True)
class CameraConfig:
    """``[camera]``: which source, its options, and how a live one reconnects.

    Options a kind does not take stay None (``SOURCE_KINDS`` lists each kind's keys); an
    option left None is not passed, so the source's own default applies.
    """

    kind: str
    #: opencv: device index or path (``/dev/video0``)
    device: int | str | None = None
    #: video file (video) or image directory (images)
    path: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    loop: bool | None = None
    #: picamera2: which camera
    camera_num: int | None = None
    #: the name the source reports in logs and the audit log
    name: str | None = None
    #: reconnect backoff of a live source (first wait, longest wait), in seconds; the
    #: defaults are :class:`Backoff`'s
    reconnect_initial_s: float = Backoff.initial
    reconnect_max_s: float = Backoff.maximum

    def source_options(self) -> dict[str, Any]:
        """Keyword arguments for the kind's builder: the options that were given."""
        keys = SOURCE_KINDS[self.kind].keys
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def with_base(self, base: Path) -> CameraConfig:
        """Relative ``path`` resolved against ``base`` (the config file's folder)."""
        return replace(self, path=str(base / self.path)) if self.path else self


def _is_positive_number(v: float) -> str | None:
    return None if v > 0 else "expected a positive number"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be positive"


def parse_camera(raw: Any, section: str = "camera") -> CameraConfig:
    """Check a camera table (unknown or mistyped keys are ConfigErrors naming the key)."""
    s = Section(raw, section)
    kind = s.raw.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{section}.kind: missing; one of {', '.join(sorted(SOURCE_KINDS))}")
    spec = SOURCE_KINDS.get(kind)
    if spec is None:
        known = ", ".join(sorted(SOURCE_KINDS))
        raise ConfigError(f"{section}.kind: unknown camera kind '{kind}'; one of {known}")
    s.used.add("kind")
    d = CameraConfig(kind=kind)
    options: dict[str, Any] = {}
    for key in s.raw:
        if key in spec.keys:
            check = _positive if key in ("width", "height", "fps") else None
            options[key] = s.get(key, spec.keys[key], check=check)
    backoff = {
        key: s.get(key, float, getattr(d, key), check=_is_positive_number)
        for key in ("reconnect_initial_s", "reconnect_max_s")
    }
    allowed = ", ".join(sorted(set(spec.keys) | COMMON_KEYS))
    s.finish(f" for kind '{kind}' (allowed: {allowed})")
    for key in spec.required:
        if key not in options:
            raise ConfigError(f"{section}.{key}: required for kind '{kind}'")
    return CameraConfig(kind=kind, **options, **backoff)


def open_source(
    cfg: CameraConfig | Mapping[str, Any], *, clock: Clock | None = None, section: str = "camera"
) -> FrameSource:
    """Create (not yet open) the source described by ``cfg`` (a table is checked first)."""
    camera = cfg if isinstance(cfg, CameraConfig) else parse_camera(cfg, section)
    kwargs = camera.source_options()
    if clock is not None:
        kwargs["clock"] = clock
    return SOURCE_KINDS[camera.kind].builder(**kwargs)
