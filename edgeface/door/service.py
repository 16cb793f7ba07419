"""Wiring: build the camera, identifier, actuator, audit log and daemon from a ``DoorConfig``.

Kept apart from the loop so tests build a daemon from parts, and the CLI and ``--check``
share one way of turning the config into objects.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from edgeface.camera import Backoff, FrameSource, ResilientSource, open_source
from edgeface.door.actuators import FailSecureActuator, make_actuator
from edgeface.door.audit import AuditLog
from edgeface.door.config import DoorConfig, LivenessCheckConfig
from edgeface.door.daemon import DoorDaemon
from edgeface.door.identify import Identifier
from edgeface.door.inbox import DoorInbox
from edgeface.door.live_gallery import LiveGallery
from edgeface.door.notify import Notifier
from edgeface.door.threshold import ThresholdRule
from edgeface.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from edgeface.door.pipeline_identifier import PipelineIdentifier
    from edgeface.fleet.agent import DeviceAgent
    from edgeface.gallery.keys import KeySource
    from edgeface.gallery.store import Gallery
    from edgeface.liveness import LivenessChecker

log = logging.getLogger("edgeface.door")


def gallery_key(cfg: DoorConfig) -> KeySource:
    """The gallery's key source: a systemd credential (production) or a key file (dev)."""
    from edgeface.gallery.keysource import configured_key

    return configured_key(cfg.gallery.key_file, cfg.gallery.key_credential)


def load_gallery(cfg: DoorConfig) -> Gallery:
    from edgeface.gallery.store import GalleryFile

    if cfg.gallery.path is None:
        raise ConfigError("gallery.path: required to run the door")
    return GalleryFile(cfg.gallery.path, gallery_key(cfg)).load()


def build_liveness(lc: LivenessCheckConfig) -> LivenessChecker | None:
    """The liveness checker of a ``[liveness]`` table (door or kiosk), or None when it is off.

    Fails closed: a missing or corrupt model or calibration raises here, before the relay
    (door) or the page (kiosk) and the audit log are opened, and nothing starts.
    """
    if not lc.required:
        return None
    from edgeface.liveness import LivenessChecker, LivenessConfig

    return LivenessChecker.from_config(
        LivenessConfig(
            models=lc.models,
            paths=tuple(str(p) for p in lc.paths) if lc.paths else None,
            backend=lc.backend,
            threshold=lc.threshold,
            target_bpcer=lc.target_bpcer,
            calibration=str(lc.calibration) if lc.calibration else None,
        )
    )


def build_identifier(cfg: DoorConfig) -> tuple[PipelineIdentifier, LiveGallery]:
    """FacePipeline + live gallery, loaded once here so a bad setup fails at start.

    The pipeline recognizes faces of at least the policy's ``min_face_size``, chosen by
    ``recognition.select`` among those (size first, then selection, as everywhere); with
    ``full_detect_every > 1`` its detector is the tracking wrapper. The threshold follows the
    gallery: at every reload :class:`ThresholdRule` derives it from the gallery's size
    (``target_fpir``), or takes the fixed FAR / pinned value.
    """
    from edgeface.door.pipeline_identifier import PipelineIdentifier

    try:
        from edgeface.recognition import FacePipeline
    except ImportError as exc:
        raise ModelError(f"recognition pipeline unavailable ({exc})") from exc
    from edgeface.detector import DetectorConfig
    from edgeface.embedder import EmbedderConfig
    from edgeface.recognition import PipelineConfig

    if cfg.gallery.path is None:
        raise ConfigError("gallery.path: required to run the door")
    rc = cfg.recognition
    min_detect = cfg.policy.detector_min_face_size  # see edgeface.face_sizes
    pipeline = FacePipeline.from_config(
        PipelineConfig(
            detector=DetectorConfig(
                min_face_size=min_detect,
                backend=rc.detector_backend,
                workers=rc.detector_workers,
            ),
            embedder=EmbedderConfig(
                model=rc.embedder_model,
                path=str(rc.embedder_path) if rc.embedder_path else None,
            ),
            select=rc.select,  # type: ignore[arg-type]
            min_face_size=cfg.policy.min_face_size,
        )
    )
    rule = ThresholdRule(rc, pipeline.calibration)
    pipeline = pipeline.tracking(rc.full_detect_every)
    identifier = PipelineIdentifier(pipeline, liveness=build_liveness(cfg.liveness))

    def use(gallery: Gallery) -> dict[str, Any]:
        choice = rule.choose(len(gallery))
        identifier.use_gallery(gallery, choice.threshold)
        log.info("gallery generation %s: %s", gallery.generation, choice.describe())
        return choice.fields()

    live = LiveGallery(
        cfg.gallery.path,
        lambda: load_gallery(cfg),
        use,
        also_watch=[cfg.gallery.key_file] if cfg.gallery.key_file else [],
    )
    live.poll(raise_errors=True)
    return identifier, live


def lock_relay(cfg: DoorConfig) -> int:
    """Drive the relay to locked and release it (after the daemon ended, however it ended).

    Returns 0 when the actuator confirmed the lock, 13 otherwise; no model or gallery is
    touched, so this works even when those are what made the daemon fail.
    """
    actuator = FailSecureActuator(make_actuator(cfg.actuator), max_unlock_s=cfg.policy.unlock_s)
    try:
        actuator.open()
        locked = actuator.lock()
    finally:
        actuator.close()
    log.info("relay %s", "locked" if locked else "could NOT be locked")
    return 0 if locked else 13


def open_audit(cfg: DoorConfig) -> AuditLog:
    """The audit log with its HMAC key (systemd credential or key file) and head file."""
    from edgeface.door.audit import load_audit_key

    a = cfg.audit
    return AuditLog(
        a.path,
        max_bytes=a.max_bytes,
        keep=a.keep,
        key=load_audit_key(key_file=a.key_file, credential=a.key_credential),
        head_path=a.head_path,
    )


def build_source(cfg: DoorConfig, inbox: DoorInbox | None = None, **kw: Any) -> FrameSource:
    """The configured camera; a live one wrapped to reconnect, reporting to ``inbox`` (camera
    events) and retrying until the inbox's stop flag is set."""
    cam = cfg.camera
    inner = open_source(cam, **kw)
    if not inner.live:
        return inner
    return ResilientSource(
        inner,
        backoff=Backoff(
            initial=cam.reconnect_initial_s,
            maximum=cam.reconnect_max_s,
        ),
        on_event=inbox.camera_event if inbox is not None else None,
        should_stop=inbox.stopping if inbox is not None else lambda: False,
    )


def build_daemon(
    cfg: DoorConfig,
    *,
    identifier: Identifier | None = None,
    source: FrameSource | None = None,
    notifier: Notifier | None = None,
) -> DoorDaemon:
    # The audit log first, so that a start-up failure (bad model, missing gallery, wrong key)
    # leaves a record whenever the log is writable; then the slow and fallible part.
    audit = open_audit(cfg)
    live: LiveGallery | None = None
    try:
        if identifier is None:
            identifier, live = build_identifier(cfg)
        actuator = FailSecureActuator(make_actuator(cfg.actuator), max_unlock_s=cfg.policy.unlock_s)
    except BaseException as exc:
        msg = str(exc) or type(exc).__name__
        with contextlib.suppress(Exception):
            audit.append("fault", kind="startup", error=type(exc).__name__, reason=msg[:300])
        audit.close()
        raise
    # Created first and given to both the camera and the daemon: neither needs the other.
    inbox = DoorInbox(on_camera_lost=actuator.lock)
    return DoorDaemon(
        cfg,
        source=source or build_source(cfg, inbox),
        identifier=identifier,
        actuator=actuator,
        audit=audit,
        notifier=notifier or (Notifier() if cfg.daemon.watchdog else Notifier(address="")),
        gallery=live,
        inbox=inbox,
    )


def attach_fleet(daemon: DoorDaemon, cfg: DoorConfig) -> DeviceAgent | None:
    """With an ``[mqtt]`` section: start the fleet agent beside the daemon (None otherwise).

    The daemon is not changed beyond its port (:mod:`edgeface.door.port`): its audit log is
    wrapped so the agent sees each record, and the agent submits verified commands. A gallery
    change applied by the agent is swapped into the identifier for the next frame.
    """
    if cfg.mqtt is None:
        return None
    from edgeface.door.port import TeeAudit
    from edgeface.fleet.agent import DeviceAgent

    ident = daemon.identifier
    gallery_file = None
    if cfg.gallery.path is not None and cfg.mqtt.accepts_fleet:
        from edgeface.gallery.store import GalleryFile

        gallery_file = GalleryFile(cfg.gallery.path, gallery_key(cfg))

    def swap_gallery(gallery: Gallery) -> None:
        if hasattr(ident, "gallery"):
            ident.gallery = gallery  # one attribute store: the next frame uses the new one

    agent = DeviceAgent(
        cfg.mqtt,
        door=daemon,
        audit=daemon.audit,
        gallery_file=gallery_file,
        gallery=getattr(ident, "gallery", None),
        model=getattr(ident, "model_ref", None),
        on_gallery=swap_gallery,
        bundle=(
            ident.model_ref.describe()
            if getattr(ident, "model_ref", None) is not None
            else cfg.recognition.embedder_model
        ),
    )
    daemon.audit = TeeAudit(daemon.audit, [agent])
    agent.start()
    return agent
