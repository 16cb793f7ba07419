"""Wiring: turn a :class:`KioskConfig` into a running engine (camera, pipeline, gallery, audit).

The door's builders are reused where the meaning is the same (gallery key from a systemd
credential or key file, the camera wrapped for reconnects), so the kiosk and the door open
the same gallery the same way. ``--check`` is here too, in the door's one-line-per-check form.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edgeface.camera import Backoff, FrameSource, open_source
from edgeface.door.audit import AuditLog
from edgeface.door.health import (
    CheckResult,
    _check,
    check_camera,
    check_liveness_table,
    check_models,
)
from edgeface.door.threshold import ThresholdRule
from edgeface.errors import ConfigError, EdgefaceError
from edgeface.face_sizes import DETECTOR_MIN_FACE, KIOSK_SEARCH_SHARE, detector_search_size
from edgeface.kiosk.config import KioskConfig
from edgeface.kiosk.engine import KioskEngine
from edgeface.kiosk.secrets_store import PinStore, ensure_private_dir

if TYPE_CHECKING:
    from edgeface.liveness import LivenessChecker


def gallery_file(cfg: KioskConfig) -> Any:
    from edgeface.door.service import gallery_key
    from edgeface.gallery.store import GalleryFile

    if cfg.gallery.path is None:
        raise ConfigError("gallery.path: required (the gallery the kiosk enrolls into)")
    return GalleryFile(cfg.gallery.path, gallery_key(cfg), lock_timeout=10.0)  # type: ignore[arg-type]


def build_pipeline(cfg: KioskConfig) -> Any:
    """The shared recognition pipeline, searching faces a little smaller than any gate so the
    screen can say "come closer" instead of nothing, and tracking faces between full
    searches (``[recognition] full_detect_every``)."""
    from edgeface.detector import DetectorConfig
    from edgeface.embedder import EmbedderConfig
    from edgeface.recognition import FacePipeline, PipelineConfig

    rc = cfg.recognition
    smallest = min(cfg.verify.policy.min_face_size, cfg.enroll.gates.min_face_size)
    search = detector_search_size(smallest, KIOSK_SEARCH_SHARE, floor=DETECTOR_MIN_FACE)
    pipeline = FacePipeline.from_config(
        PipelineConfig(
            detector=DetectorConfig(min_face_size=search, backend=rc.detector_backend),
            embedder=EmbedderConfig(
                model=rc.embedder_model,
                path=str(rc.embedder_path) if rc.embedder_path else None,
            ),
            select=rc.select,  # type: ignore[arg-type]
            min_face_size=search,
        )
    )
    # the camera sees the same people for many frames: detect, then track, as the door does
    return pipeline.tracking(rc.full_detect_every)


def reconnect_backoff(cfg: KioskConfig) -> Backoff:
    """How a lost live camera is retried (``[camera] reconnect_*``)."""
    return Backoff(initial=cfg.camera.reconnect_initial_s, maximum=cfg.camera.reconnect_max_s)


def open_gallery(cfg: KioskConfig, pipeline: Any) -> Any:
    """The gallery file, created (empty, bound to the embedder) on the kiosk's first start."""
    from edgeface.gallery.store import ModelRef

    gf = gallery_file(cfg)
    if not gf.exists():
        try:
            gf.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"{gf.path.parent}: cannot create ({exc.strerror})") from exc
        gf.create(model=ModelRef.of(pipeline.embedder))
    return gf


def build_engine(
    cfg: KioskConfig,
    *,
    source: FrameSource | None = None,
    pipeline: Any = None,
    reconnect: Backoff | None = None,
    liveness: LivenessChecker | None = None,
    challenge_side: Callable[[], str] | None = None,
) -> KioskEngine:
    """The kiosk's engine. A camera opened here from ``[camera]`` reconnects by itself with
    the configured backoff; a ``source`` handed in (tests, benchmarks) is used as is unless
    ``reconnect`` is given. The engine wraps the camera itself, so camera events and the
    stop flag need no back-reference. The liveness checker of ``[liveness]`` is built first
    (unless one is handed in): a missing or corrupt model or calibration fails here, before
    the gallery, the audit log or the camera is opened. ``challenge_side`` picks the side of
    the head-turn challenge (``[verify] challenge``); random unless a test pins it."""
    from edgeface.door.service import build_liveness

    if liveness is None:
        liveness = build_liveness(cfg.liveness)
    ensure_private_dir(cfg.state_dir)
    pipeline = pipeline or build_pipeline(cfg)
    rc = cfg.recognition
    # duplicates are screened at the per-comparison FAR; who is welcomed (and who may ask to
    # be forgotten) at the door's rule, which scales with the gallery (target_fpir)
    threshold = rc.threshold if rc.threshold is not None else pipeline.threshold(far=rc.far)
    rule = ThresholdRule(rc, pipeline.calibration)
    gf = open_gallery(cfg, pipeline)
    audit = AuditLog(cfg.audit.path, max_bytes=cfg.audit.max_bytes, keep=cfg.audit.keep)
    if source is None:
        source, reconnect = open_source(cfg.camera), reconnect or reconnect_backoff(cfg)
    return KioskEngine(
        cfg,
        source=source,
        pipeline=pipeline,
        gallery_file=gf,
        audit=audit,
        threshold=threshold,
        threshold_for=lambda n: rule.choose(n).threshold,
        reconnect=reconnect,
        liveness=liveness,
        **({"challenge_side": challenge_side} if challenge_side is not None else {}),
    )


def run_checks(cfg: KioskConfig, *, camera: bool = True) -> list[CheckResult]:
    """``edgeface kiosk --check``: config, models, liveness, the head-turn challenge, gallery key
    and file, state directory, operator PIN, audit chain, one camera frame; one ``ok``/``FAIL``
    line each."""
    from edgeface.door.config import ActuatorConfig, DoorConfig
    from edgeface.door.health import check_audit

    door_like = DoorConfig(
        camera=cfg.camera,
        actuator=ActuatorConfig(kind="dryrun"),
        recognition=cfg.recognition,
        gallery=cfg.gallery,
        audit=cfg.audit,
    )
    results = [CheckResult("config", True, f"{cfg.source} is valid")]
    results += check_models(door_like)
    results.append(
        check_liveness_table(cfg.liveness, "photos and screens can be welcomed, enroll and forget")
    )
    ch = cfg.verify.challenge
    results.append(
        CheckResult(
            "challenge",
            True,
            f"head turn to a random side after each match (yaw {ch.turn_yaw:.2f}, "
            f"{ch.timeout_s:g} s)"
            if ch.enabled
            else 'off ([verify] challenge = "head_turn" asks for a head turn after a match)',
        )
    )

    def gallery() -> str:
        from edgeface.door.service import gallery_key

        key = gallery_key(door_like)
        gf = gallery_file(cfg)
        if not gf.exists():
            return f"{gf.path}: not there yet, the kiosk creates it (key {key.description})"
        g = gf.load()
        return f"{gf.path}: {len(g)} identities, decrypted and authenticated"

    results.append(_check("gallery", gallery))

    def state() -> str:
        d = cfg.state_dir
        if d.exists() and not os.access(d, os.W_OK):
            raise EdgefaceError(f"{d}: state directory not writable")
        if not d.exists() and not os.access(d.parent, os.W_OK):
            raise EdgefaceError(f"{d.parent}: cannot create the state directory here")
        return f"{d}: writable"

    results.append(_check("state directory", state))

    def pin() -> str:
        store = PinStore(cfg.state_dir, min_digits=cfg.operator.pin_min_digits)
        if not store.is_set:
            raise EdgefaceError(
                f"{store.path}: no operator PIN; set one with `edgeface kiosk pin --config ...`"
            )
        return f"{store.path}: set (scrypt hash)"

    results.append(_check("operator PIN", pin))
    results.append(check_audit(door_like))
    if camera:
        results.append(check_camera(replace(door_like)))
    return results
