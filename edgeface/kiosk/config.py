"""``kiosk.toml``: the kiosk's configuration, validated up front in the door's style.

The camera, recognition, gallery, audit and lockout tables mean exactly what they mean in
``door.toml`` (they are parsed by the same functions), so one device running both a door
daemon and a kiosk is configured once in one vocabulary. What is new: ``[server]`` (where the
page is served, bound to loopback by default), ``[verify]`` (the k-of-n policy and how long a
result stays on screen), ``[operator]`` (PIN lockout and idle timeout) and ``[enroll]``
(how many templates a guided capture collects and the quality gates they pass).
``[verify] challenge = "head_turn"`` adds the active check of :mod:`edgeface.kiosk.challenge`.
``[liveness]`` is the door's table too (same keys, parser and defaults, ``required = true``):
a printed photo or a phone screen is neither welcomed, enrolled nor allowed to "forget" anyone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeface.camera.factory import CameraConfig, parse_camera
from edgeface.door.config import (
    AuditConfig,
    GalleryConfig,
    LivenessCheckConfig,
    LockoutConfig,
    PolicyConfig,
    RecognitionConfig,
    _gallery,
    _liveness,
    _lockout,
    _policy,
    _recognition,
)
from edgeface.errors import ConfigError
from edgeface.face_sizes import KIOSK_VERIFY_MIN_FACE
from edgeface.gallery.quality import QualityGates
from edgeface.kiosk.challenge import KINDS as CHALLENGE_KINDS
from edgeface.kiosk.challenge import ChallengeConfig
from edgeface.schema import Section, load_toml_config, non_negative, positive

DEFAULT_STATE_DIR = Path("/var/lib/edgeface/kiosk")


@dataclass(frozen=True)
class ServerConfig:
    """Where the page is served. Loopback only unless ``host`` says otherwise (and then
    ``allow_remote`` must say so too: a kiosk's PIN pad is not meant for the network)."""

    host: str = "127.0.0.1"
    port: int = 8321
    allow_remote: bool = False
    max_body_bytes: int = 4096
    session_s: float = 900.0
    max_sessions: int = 64
    preview_fps: float = 15.0
    preview_max_s: float = 300.0
    jpeg_quality: int = 75


@dataclass(frozen=True)
class VerifyConfig:
    """The door's k-of-n policy, plus how long "Welcome" / "Not recognized" stays up."""

    #: the door's defaults except a shorter result and a nearer face (a person at a screen)
    policy: PolicyConfig = field(
        default_factory=lambda: PolicyConfig(unlock_s=3.0, min_face_size=KIOSK_VERIFY_MIN_FACE)
    )
    result_s: float = 3.0
    #: ``challenge = "head_turn"``: after a match, a head turn to a random side (off by default)
    challenge: ChallengeConfig = field(default_factory=ChallengeConfig)


@dataclass(frozen=True)
class OperatorConfig:
    """PIN pad: wrong PINs (and wrong invitation codes) lock the pad out with backoff."""

    idle_timeout_s: float = 60.0
    pin_min_digits: int = 6
    #: stricter than the door's face lockout: 3 wrong PINs in 5 minutes
    lockout: LockoutConfig = field(
        default_factory=lambda: LockoutConfig(failures=3, window_s=300.0, global_failures=3)
    )


@dataclass(frozen=True)
class EnrollConfig:
    templates: int = 3
    capture_timeout_s: float = 60.0
    #: frames between two accepted captures, so templates are not near-duplicates
    every: int = 2
    invite_valid_hours: float = 24.0
    gates: QualityGates = field(default_factory=QualityGates)


@dataclass(frozen=True)
class KioskConfig:
    camera: CameraConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    lockout: LockoutConfig = field(default_factory=LockoutConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    enroll: EnrollConfig = field(default_factory=EnrollConfig)
    liveness: LivenessCheckConfig = field(default_factory=LivenessCheckConfig)
    state_dir: Path = DEFAULT_STATE_DIR
    source: str = "<dict>"


SECTIONS = (
    "state_dir",
    "server",
    "camera",
    "recognition",
    "gallery",
    "audit",
    "lockout",
    "verify",
    "operator",
    "enroll",
    "liveness",
)


def _server(s: Section) -> ServerConfig:
    d = ServerConfig()
    cfg = ServerConfig(
        host=s.get("host", str, d.host),
        port=s.get(
            "port", int, d.port, check=lambda v: None if 0 < v < 65536 else "must be 1..65535"
        ),
        allow_remote=s.get("allow_remote", bool, d.allow_remote),
        max_body_bytes=s.get(
            "max_body_bytes",
            int,
            d.max_body_bytes,
            check=lambda v: None if 256 <= v <= 1_000_000 else "must be 256..1000000",
        ),
        session_s=s.get("session_s", float, d.session_s, check=positive),
        max_sessions=s.get("max_sessions", int, d.max_sessions, check=positive),
        preview_fps=s.get("preview_fps", float, d.preview_fps, check=positive),
        preview_max_s=s.get("preview_max_s", float, d.preview_max_s, check=positive),
        jpeg_quality=s.get(
            "jpeg_quality",
            int,
            d.jpeg_quality,
            check=lambda v: None if 10 <= v <= 95 else "must be 10..95",
        ),
    )
    if not cfg.allow_remote and not is_loopback(cfg.host):
        raise ConfigError(
            f"server.host: {cfg.host!r} is not a loopback address; the kiosk serves its PIN "
            "pad to the local screen only (set server.allow_remote = true to override)"
        )
    return cfg


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _verify(s: Section) -> VerifyConfig:
    d = VerifyConfig()
    p = d.policy
    policy_keys = {
        k: s.raw[k]
        for k in ("k", "n", "window_s", "cooldown_s", "min_face_size", "min_quality")
        if k in s.raw
    }
    inner = Section({**p.__dict__, **policy_keys}, s.name)
    try:
        policy = _policy(inner)
    except ConfigError as exc:  # the door's messages say "policy.k"; here the table is [verify]
        raise ConfigError(str(exc).replace("policy.", "verify.")) from None
    s.used.update(policy_keys)
    result_s = s.get(
        "result_s",
        float,
        d.result_s,
        check=lambda v: None if 0 < v <= 30 else "must be in (0, 30]",
    )
    # the policy's "unlocked" time is the time the welcome stays on screen
    policy = PolicyConfig(**{**policy.__dict__, "unlock_s": result_s})
    return VerifyConfig(policy=policy, result_s=result_s, challenge=_challenge(s))


def _challenge(s: Section) -> ChallengeConfig:
    d = ChallengeConfig()
    return ChallengeConfig(
        kind=s.get(
            "challenge",
            str,
            d.kind,
            check=lambda v: None if v in CHALLENGE_KINDS else f"must be one of {CHALLENGE_KINDS}",
        ),
        turn_yaw=s.get(
            "challenge_turn_yaw",
            float,
            d.turn_yaw,
            check=lambda v: None if 0.1 <= v <= 0.9 else "must be in [0.1, 0.9]",
        ),
        timeout_s=s.get(
            "challenge_timeout_s",
            float,
            d.timeout_s,
            check=lambda v: None if 1 <= v <= 60 else "must be in [1, 60]",
        ),
    )


def _operator(s: Section) -> OperatorConfig:
    d = OperatorConfig()
    lo = d.lockout
    return OperatorConfig(
        idle_timeout_s=s.get("idle_timeout_s", float, d.idle_timeout_s, check=positive),
        pin_min_digits=s.get(
            "pin_min_digits",
            int,
            d.pin_min_digits,
            check=lambda v: None if 4 <= v <= 12 else "must be 4..12",
        ),
        lockout=LockoutConfig(
            failures=s.get("pin_failures", int, lo.failures, check=positive),
            window_s=s.get("pin_window_s", float, lo.window_s, check=positive),
            pause_s=s.get("pin_pause_s", float, lo.pause_s, check=positive),
            max_pause_s=s.get("pin_max_pause_s", float, lo.max_pause_s, check=positive),
            global_failures=s.get("pin_failures", int, lo.failures, check=positive),
            reset_after_s=lo.reset_after_s,
        ),
    )


def _enroll(s: Section) -> EnrollConfig:
    d = EnrollConfig()
    g = d.gates
    return EnrollConfig(
        templates=s.get(
            "templates", int, d.templates, check=lambda v: None if 1 <= v <= 5 else "must be 1..5"
        ),
        capture_timeout_s=s.get("capture_timeout_s", float, d.capture_timeout_s, check=positive),
        every=s.get("every", int, d.every, check=positive),
        invite_valid_hours=s.get("invite_valid_hours", float, d.invite_valid_hours, check=positive),
        gates=QualityGates(
            min_face_size=s.get("min_face_size", float, g.min_face_size, check=non_negative),
            min_sharpness=s.get("min_sharpness", float, g.min_sharpness, check=non_negative),
            max_yaw=s.get("max_yaw", float, g.max_yaw, check=positive),
            min_pitch=s.get("min_pitch", float, g.min_pitch, check=non_negative),
            max_pitch=s.get("max_pitch", float, g.max_pitch, check=positive),
            min_detection_score=s.get(
                "min_detection_score", float, g.min_detection_score, check=non_negative
            ),
        ),
    )


def parse_config(
    raw: Mapping[str, Any], *, source: str = "<dict>", base: Path | None = None
) -> KioskConfig:
    """Validate a parsed TOML document; relative paths are resolved against ``base``."""
    base = base or Path.cwd()
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(SECTIONS)})")
    if "camera" not in raw:
        raise ConfigError('camera: required section (e.g. [camera] kind = "opencv")')
    camera = parse_camera(raw["camera"]).with_base(base)
    state = raw.get("state_dir", str(DEFAULT_STATE_DIR))
    if not isinstance(state, str) or not state:
        raise ConfigError(f"state_dir: expected a path, got {state!r}")
    state_dir = base / state
    builders: dict[str, Callable[[Section], Any]] = {
        "server": _server,
        "recognition": lambda s: _recognition(s, base),
        "gallery": lambda s: _gallery(s, base),
        "audit": lambda s: _audit(s, base, state_dir),
        "lockout": _lockout,
        "verify": _verify,
        "operator": _operator,
        "enroll": _enroll,
        "liveness": lambda s: _liveness(s, base),
    }
    out: dict[str, Any] = {}
    for name, build in builders.items():
        s = Section(raw.get(name), name)
        out[name] = build(s)
        s.finish()
    if "max_fps" not in (raw.get("recognition") or {}):
        # the door identifies 5 frames/s; a kiosk answers a waiting person, so it may use more
        out["recognition"] = replace(out["recognition"], max_fps=10.0)
    return KioskConfig(camera=camera, state_dir=state_dir, source=source, **out)


def _audit(s: Section, base: Path, state_dir: Path) -> AuditConfig:
    d = AuditConfig()
    path = s.get("path", str)
    return AuditConfig(
        path=(base / path) if path else state_dir / "audit" / "kiosk.jsonl",
        max_bytes=s.get(
            "max_bytes", int, d.max_bytes, check=lambda v: None if v >= 4096 else "must be >= 4096"
        ),
        keep=s.get("keep", int, d.keep, check=positive),
    )


def load_config(path: str | Path) -> KioskConfig:
    """Read and validate ``kiosk.toml``; every failure is a one-line :class:`ConfigError`."""
    return load_toml_config(path, parse_config)
