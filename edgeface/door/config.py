"""``door.toml``: the daemon's configuration, parsed with :mod:`tomllib` and validated up front.

Every problem is a :class:`ConfigError` naming the key (``policy.k: must be <= policy.n``), and
unknown keys are errors too: a door unit runs for months unattended, so a misspelt
``unlock_s`` must stop ``--check`` rather than silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.camera.factory import CameraConfig, parse_camera
from edgeface.door.actuator_config import ActuatorConfig, parse_actuator
from edgeface.embedder.model import DEFAULT_EMBEDDER
from edgeface.errors import ConfigError
from edgeface.face_sizes import DOOR_SEARCH_SHARE, POLICY_MIN_FACE, detector_search_size
from edgeface.fleet.config import MqttConfig, parse_mqtt
from edgeface.liveness.calibration import DEFAULT_TARGET_BPCER
from edgeface.recognition.calibration import DEFAULT_FAR
from edgeface.schema import (
    Section,
    load_toml_config,
    non_negative,
    positive,
    str_list,
    unit_interval,
)


@dataclass(frozen=True)
class PolicyConfig:
    """k-of-n voting, how long the door stays open, and the pause before the next unlock."""

    k: int = 3
    n: int = 5
    window_s: float = 3.0
    unlock_s: float = 5.0
    cooldown_s: float = 2.0
    #: smallest face a frame counts with (see :mod:`edgeface.face_sizes`)
    min_face_size: float = POLICY_MIN_FACE
    min_quality: float = 0.9

    @property
    def detector_min_face_size(self) -> float:
        """The door detector's search minimum: a little below ``min_face_size``."""
        return detector_search_size(self.min_face_size, DOOR_SEARCH_SHARE)


@dataclass(frozen=True)
class LockoutConfig:
    """Anti-hammering: ``failures`` failed attempts within ``window_s`` pause recognition for
    ``pause_s``, doubling on each repeat up to ``max_pause_s``; ``global_failures`` counts
    across all sources. ``reset_after_s`` of quiet forgets the doubling."""

    failures: int = 5
    window_s: float = 60.0
    pause_s: float = 30.0
    max_pause_s: float = 960.0
    global_failures: int = 10
    reset_after_s: float = 600.0


#: false-positive identification rate per attempt the door aims at when nothing else is set
DEFAULT_TARGET_FPIR = 1e-4


@dataclass(frozen=True)
class RecognitionConfig:
    """``target_fpir`` (default) scales the threshold with the gallery; ``far`` fixes a
    per-comparison FAR instead; ``threshold`` pins the cosine. At most one of the three."""

    far: float = DEFAULT_FAR
    threshold: float | None = None
    target_fpir: float | None = DEFAULT_TARGET_FPIR
    select: str = "largest"
    max_fps: float = 5.0
    #: manifest names whose sha256 ``--check`` verifies
    models: tuple[str, ...] = ("mtcnn", DEFAULT_EMBEDDER)
    embedder_model: str = DEFAULT_EMBEDDER
    #: explicit embedder file (e.g. the INT8 model); its manifest entry is ``embedder_model``
    embedder_path: Path | None = None
    detector_backend: str = "numpy"
    #: the full MTCNN cascade runs at least every this many identified frames; in between a
    #: face already found is tracked (R-Net and O-Net near its last box, see
    #: :mod:`edgeface.detector.tracking`). 1 = the full cascade on every frame
    full_detect_every: int = 3
    #: processes that share a full detection (``DetectorConfig.workers``): 1 = none. A helper
    #: process holds its own NumPy, OpenCV and MTCNN (~60 MB RSS); with tracking only every
    #: ``full_detect_every``-th frame runs the full cascade, so by default the door has none
    detector_workers: int = 1


@dataclass(frozen=True)
class GalleryConfig:
    path: Path | None = None
    key_file: Path | None = None
    key_credential: str | None = None


@dataclass(frozen=True)
class AuditConfig:
    """The log; its HMAC key (systemd credential or key file; none = unauthenticated chain);
    the head file that pins the newest and the oldest record (default: ``<path>.head``)."""

    path: Path = Path("/var/lib/edgeface/audit/door.jsonl")
    max_bytes: int = 10_000_000
    keep: int = 50
    key_file: Path | None = None
    key_credential: str | None = None
    head_path: Path | None = None


@dataclass(frozen=True)
class DaemonConfig:
    watchdog: bool = True
    stall_s: float = 10.0
    max_consecutive_errors: int = 20
    status_interval_s: float = 30.0
    drop_frames: bool | None = None  # None: drop for live cameras, not for replays
    #: log decisions with the display name (False: the identity id only)
    log_names: bool = True


@dataclass(frozen=True)
class LivenessCheckConfig:
    """``[liveness]``: the presentation-attack check every counted frame must pass.

    ``required = false`` lets printed photos and phone screens of enrolled people open the
    door; the daemon logs a warning at every start when it is off. The threshold on the fused
    live score is ``threshold`` if set, else the calibrated one for ``target_bpcer`` (share
    of live faces wrongly rejected, per frame) of the model files in use.
    """

    required: bool = True
    threshold: float | None = None
    target_bpcer: float = DEFAULT_TARGET_BPCER
    #: manifest entries of the two networks (2.7x and 4.0x crops)
    models: tuple[str, ...] = ("minifasnet-v2", "minifasnet-v1se")
    #: explicit files for them (e.g. the INT8 pair), one per model
    paths: tuple[Path, ...] | None = None
    #: None: by the files' format (.onnx ONNX Runtime, .tflite LiteRT)
    backend: str | None = None
    #: calibration file; default: the one matching the model files, beside them or packaged
    calibration: Path | None = None


@dataclass(frozen=True)
class DoorConfig:
    camera: CameraConfig
    actuator: ActuatorConfig
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    liveness: LivenessCheckConfig = field(default_factory=LivenessCheckConfig)
    source: str = "<dict>"
    #: None: no [mqtt] section, the unit never opens a network socket
    mqtt: MqttConfig | None = None


SECTIONS = (
    "camera",
    "actuator",
    "policy",
    "lockout",
    "recognition",
    "gallery",
    "audit",
    "daemon",
    "mqtt",
    "liveness",
)


def _policy(s: Section) -> PolicyConfig:
    d = PolicyConfig()
    cfg = PolicyConfig(
        k=s.get("k", int, d.k, check=positive),
        n=s.get("n", int, d.n, check=positive),
        window_s=s.get("window_s", float, d.window_s, check=positive),
        unlock_s=s.get("unlock_s", float, d.unlock_s, check=positive),
        cooldown_s=s.get("cooldown_s", float, d.cooldown_s, check=non_negative),
        min_face_size=s.get("min_face_size", float, d.min_face_size, check=non_negative),
        min_quality=s.get("min_quality", float, d.min_quality, check=non_negative),
    )
    if cfg.k > cfg.n:
        raise ConfigError(f"policy.k: must be <= policy.n ({cfg.n}), got {cfg.k}")
    if cfg.k < 2:
        # One frame alone must never open a door: a single mis-match at FAR 1e-3 happens
        # about once every thousand frames of a stranger, i.e. within minutes.
        raise ConfigError(f"policy.k: must be >= 2 (one frame alone never unlocks), got {cfg.k}")
    if cfg.unlock_s > 60:
        raise ConfigError(f"policy.unlock_s: at most 60 s, got {cfg.unlock_s}")
    return cfg


def _lockout(s: Section) -> LockoutConfig:
    d = LockoutConfig()
    cfg = LockoutConfig(
        failures=s.get("failures", int, d.failures, check=positive),
        window_s=s.get("window_s", float, d.window_s, check=positive),
        pause_s=s.get("pause_s", float, d.pause_s, check=positive),
        max_pause_s=s.get("max_pause_s", float, d.max_pause_s, check=positive),
        global_failures=s.get("global_failures", int, d.global_failures, check=positive),
        reset_after_s=s.get("reset_after_s", float, d.reset_after_s, check=positive),
    )
    if cfg.max_pause_s < cfg.pause_s:
        raise ConfigError(f"lockout.max_pause_s: must be >= lockout.pause_s ({cfg.pause_s})")
    return cfg


def _recognition(s: Section, base: Path) -> RecognitionConfig:
    d = RecognitionConfig()
    thr = s.get(
        "threshold", float, None, check=lambda v: None if -1 < v < 1 else "must be in (-1, 1)"
    )
    select = s.get("select", str, d.select)
    if select not in ("largest", "central"):
        raise ConfigError(f"recognition.select: 'largest' or 'central', got {select!r}")
    models = s.get("models", list, list(d.models), check=str_list)
    emb_path = s.get("embedder_path", str)
    far = s.get("far", float, None, check=unit_interval)
    fpir = s.get("target_fpir", float, None, check=unit_interval)
    given = [k for k, v in (("threshold", thr), ("far", far), ("target_fpir", fpir)) if v]
    if len(given) > 1:
        raise ConfigError(f"recognition.{given[1]}: give one of threshold, far, target_fpir")
    if thr is None and far is None and fpir is None:
        fpir = d.target_fpir
    return RecognitionConfig(
        far=far if far is not None else d.far,
        threshold=thr,
        target_fpir=fpir,
        select=select,
        max_fps=s.get("max_fps", float, d.max_fps, check=positive),
        models=tuple(models),
        embedder_model=s.get("embedder_model", str, d.embedder_model),
        embedder_path=(base / emb_path) if emb_path else None,
        detector_backend=s.get("detector_backend", str, d.detector_backend),
        full_detect_every=s.get("full_detect_every", int, d.full_detect_every, check=positive),
        detector_workers=s.get(
            "detector_workers",
            int,
            d.detector_workers,
            check=lambda v: None if 1 <= v <= 64 else "must be between 1 and 64",
        ),
    )


def _gallery(s: Section, base: Path) -> GalleryConfig:
    path = s.get("path", str)
    key_file = s.get("key_file", str)
    cred = s.get("key_credential", str)
    if key_file and cred:
        raise ConfigError("gallery.key_file: give key_file or key_credential, not both")
    return GalleryConfig(
        path=(base / path) if path else None,
        key_file=(base / key_file) if key_file else None,
        key_credential=cred,
    )


def _audit(s: Section, base: Path) -> AuditConfig:
    d = AuditConfig()
    key_file = s.get("key_file", str)
    cred = s.get("key_credential", str)
    head = s.get("head_path", str)
    if key_file and cred:
        raise ConfigError("audit.key_file: give key_file or key_credential, not both")
    return AuditConfig(
        key_file=(base / key_file) if key_file else None,
        key_credential=cred,
        head_path=(base / head) if head else None,
        path=base / s.get("path", str, str(d.path)),
        max_bytes=s.get(
            "max_bytes", int, d.max_bytes, check=lambda v: None if v >= 4096 else "must be >= 4096"
        ),
        keep=s.get("keep", int, d.keep, check=positive),
    )


def _daemon(s: Section) -> DaemonConfig:
    d = DaemonConfig()
    return DaemonConfig(
        watchdog=s.get("watchdog", bool, d.watchdog),
        stall_s=s.get("stall_s", float, d.stall_s, check=positive),
        max_consecutive_errors=s.get(
            "max_consecutive_errors", int, d.max_consecutive_errors, check=positive
        ),
        status_interval_s=s.get("status_interval_s", float, d.status_interval_s, check=positive),
        drop_frames=s.get("drop_frames", bool, None),
        log_names=s.get("log_names", bool, d.log_names),
    )


def _liveness(s: Section, base: Path) -> LivenessCheckConfig:
    d = LivenessCheckConfig()
    thr = s.get("threshold", float, None, check=unit_interval)
    target = s.get("target_bpcer", float, d.target_bpcer, check=unit_interval)
    if thr is not None and "target_bpcer" in s.raw:
        raise ConfigError("liveness.threshold: give threshold or target_bpcer, not both")
    models = tuple(s.get("models", list, list(d.models), check=str_list))
    paths = s.get("paths", list, None, check=str_list)
    if paths is not None and len(paths) != len(models):
        raise ConfigError(f"liveness.paths: one file per model ({len(models)}), got {paths!r}")
    cal = s.get("calibration", str)
    return LivenessCheckConfig(
        required=s.get("required", bool, d.required),
        threshold=thr,
        target_bpcer=target,
        models=models,
        paths=tuple(base / p for p in paths) if paths else None,
        backend=s.get("backend", str, None),
        calibration=(base / cal) if cal else None,
    )


def parse_config(
    raw: Mapping[str, Any], *, source: str = "<dict>", base: Path | None = None
) -> DoorConfig:
    """Validate a parsed TOML document; relative paths are resolved against ``base``."""
    base = base or Path.cwd()
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(SECTIONS)})")
    if "camera" not in raw:
        raise ConfigError('camera: required section (e.g. [camera] kind = "picamera2")')
    if "actuator" not in raw:
        raise ConfigError('actuator: required section (e.g. [actuator] kind = "dryrun")')
    camera = parse_camera(raw["camera"]).with_base(base)
    builders: dict[str, Callable[[Section, Path], Any]] = {
        "policy": lambda s, b: _policy(s),
        "lockout": lambda s, b: _lockout(s),
        "recognition": _recognition,
        "daemon": lambda s, b: _daemon(s),
        "gallery": _gallery,
        "audit": _audit,
        "liveness": _liveness,
    }
    out: dict[str, Any] = {}
    for name, build in builders.items():
        s = Section(raw.get(name), name)
        out[name] = build(s, base)
        s.finish()
    if "mqtt" in raw:
        s = Section(raw["mqtt"], "mqtt")
        out["mqtt"] = parse_mqtt(s, base)
        s.finish()
    actuator = parse_actuator(raw["actuator"]).with_base(base)
    return DoorConfig(camera=camera, actuator=actuator, source=source, **out)


def load_config(path: str | Path) -> DoorConfig:
    """Read and validate ``door.toml``; every failure is a one-line :class:`ConfigError`."""
    return load_toml_config(path, parse_config)
