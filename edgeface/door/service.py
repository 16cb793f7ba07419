"""Wiring: build the camera, identifier, actuator, audit log and daemon from a ``DoorConfig``.

Kept apart from the loop so tests build a daemon from parts, and the CLI and ``--check``
share one way of turning the config into objects.
"""

from __future__ import annotations

from typing import Any

from edgeface.camera import Backoff, FrameSource, ResilientSource, open_source
from edgeface.door.actuators import FailSecureActuator, make_actuator
from edgeface.door.audit import AuditLog
from edgeface.door.config import DoorConfig
from edgeface.door.daemon import DoorDaemon
from edgeface.door.identify import Identifier
from edgeface.door.notify import Notifier
from edgeface.errors import ConfigError, ModelError


def gallery_key(cfg: DoorConfig) -> Any:
    """The gallery's key source: a systemd credential (production) or a key file (dev)."""
    from edgeface.gallery import keys

    g = cfg.gallery
    if g.key_credential:
        return keys.load_systemd_credential(g.key_credential)
    if g.key_file:
        return keys.load_key_file(g.key_file)
    raise ConfigError("gallery.key_credential: set key_credential (systemd) or key_file")


def load_gallery(cfg: DoorConfig) -> Any:
    from edgeface.gallery.store import GalleryFile

    if cfg.gallery.path is None:
        raise ConfigError("gallery.path: required to run the door")
    return GalleryFile(cfg.gallery.path, gallery_key(cfg)).load()


def build_identifier(cfg: DoorConfig) -> Identifier:
    """FacePipeline + gallery; the threshold comes from the FAR calibration unless pinned."""
    from edgeface.door.pipeline_identifier import PipelineIdentifier

    try:
        from edgeface.recognition import FacePipeline
    except ImportError as exc:
        raise ModelError(f"recognition pipeline unavailable ({exc})") from exc
    from edgeface.detector import DetectorConfig
    from edgeface.embedder import EmbedderConfig
    from edgeface.recognition import PipelineConfig

    rc = cfg.recognition
    # Faces below the policy's minimum are ignored anyway; not searching for them shrinks the
    # MTCNN image pyramid, which is most of the per-frame cost.
    min_detect = max(12.0, 0.8 * cfg.policy.min_face_size)
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
        )
    )
    threshold = rc.threshold if rc.threshold is not None else pipeline.threshold(far=rc.far)
    detector: Any = pipeline.detector
    if rc.full_detect_every > 1:
        from edgeface.detector.tracking import TrackingConfig, TrackingDetector

        detector = TrackingDetector(detector, TrackingConfig(full_every=rc.full_detect_every))
    return PipelineIdentifier(
        detector=detector,
        embedder=pipeline.embedder,
        gallery=load_gallery(cfg),
        threshold=threshold,
        select=rc.select,
        min_face_size=cfg.policy.min_face_size,
    )


def build_source(cfg: DoorConfig, daemon_hook: Any = None, **kw: Any) -> FrameSource:
    cam = cfg.camera
    inner = open_source(cam, **kw)
    if not inner.live:
        return inner
    return ResilientSource(
        inner,
        backoff=Backoff(
            initial=float(cam.get("reconnect_initial_s", 0.5)),
            maximum=float(cam.get("reconnect_max_s", 30.0)),
        ),
        on_event=daemon_hook,
    )


def build_daemon(
    cfg: DoorConfig,
    *,
    identifier: Identifier | None = None,
    source: FrameSource | None = None,
    notifier: Notifier | None = None,
) -> DoorDaemon:
    # The slow and fallible part first, before the relay and the audit file are opened.
    identifier = identifier or build_identifier(cfg)
    actuator = FailSecureActuator(make_actuator(cfg.actuator), max_unlock_s=cfg.policy.unlock_s)
    audit = AuditLog(cfg.audit.path, max_bytes=cfg.audit.max_bytes, keep=cfg.audit.keep)
    hooks: list[Any] = []

    def hook(event: str, detail: str) -> None:
        for h in hooks:
            h(event, detail)

    src = source or build_source(cfg, hook)
    daemon = DoorDaemon(
        cfg,
        source=src,
        identifier=identifier,
        actuator=actuator,
        audit=audit,
        notifier=notifier or (Notifier() if cfg.daemon.watchdog else Notifier(address="")),
    )
    hooks.append(daemon.on_camera_event)
    if isinstance(src, ResilientSource):
        src.should_stop = lambda: daemon.feed.stopping or daemon.stop_requested.is_set()
    return daemon
