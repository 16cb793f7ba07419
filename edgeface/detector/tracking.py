"""Detect, then track: the full cascade now and then, only R-Net and O-Net in between.

Why: a door camera sees the same face for dozens of frames, and the image pyramid with P-Net
is most of a frame's detection cost. A face found in the last frame is near its old box, so
:class:`TrackingDetector` asks R-Net and O-Net (``MTCNNDetector.detect_near``) about a small
grid of boxes around where the face is expected (its last box moved by its last motion, a
few shifts and scales), and takes what O-Net confirms.

When the full cascade runs instead (``TrackingConfig``):

* on the first frame, and whenever no face is being tracked;
* every ``full_every`` frames, so a face that enters is found within ``full_every`` frames
  (tracking only follows faces it already knows);
* when a track is lost or its O-Net score falls below ``min_score`` (or below the score the
  full cascade found it with, when that was lower): then on *that* frame, so a face is never
  missing from a frame's result because tracking failed;
* when the scene changes (a light switched, the camera moved, a replay of unrelated photos):
  the mean grey-level difference of a small thumbnail against the last frame exceeds
  ``scene_change``.

What the detector returns is O-Net's answer on the frame itself, with the same thresholds as
the full cascade, so callers (the door's decision policy) still get one fresh face, box and
landmarks per frame; only the search for where to look is shortened.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edgeface.detector import boxes as B
from edgeface.detector.mtcnn import DetectorConfig, MTCNNDetector
from edgeface.errors import ConfigError
from edgeface.imaging import ensure_rgb_uint8
from edgeface.types import Face

Mode = Literal["full", "tracked"]


@dataclass(frozen=True)
class TrackingConfig:
    """When the full cascade runs, and how widely a tracked face is searched."""

    #: the full cascade runs at least every this many frames (1 = every frame: no tracking)
    full_every: int = 3
    #: a tracked face whose O-Net score falls below this (or below its score when the full
    #: cascade found it, if that was lower) triggers the full cascade
    min_score: float = 0.9
    #: mean absolute grey-level difference (0-255) of a 32x24 thumbnail from the last frame's
    #: above which the scene counts as changed (full cascade)
    scene_change: float = 20.0
    #: candidate shifts, in units of the face's side, around the expected position
    shifts: tuple[float, ...] = (-0.15, 0.0, 0.15)
    #: candidate scales of the face's side
    scales: tuple[float, ...] = (1.0,)
    #: the expected position: the last one plus this share of the last frame's motion
    momentum: float = 1.0
    #: R-Net on the candidates, then O-Net on its best ``top_k``; False: O-Net alone
    refine: bool = True
    top_k: int = 1

    def __post_init__(self) -> None:
        if self.full_every < 1:
            raise ConfigError(f"full_every must be >= 1, got {self.full_every}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"min_score must be in [0, 1], got {self.min_score}")
        if not self.scene_change > 0:
            raise ConfigError(f"scene_change must be > 0, got {self.scene_change}")
        if not self.shifts or not self.scales or min(self.scales) <= 0:
            raise ConfigError("shifts and scales must be non-empty, scales > 0")


#: the thumbnail compared between frames for scene changes (width, height)
_THUMB = (32, 24)
#: two tracks whose boxes overlap more than this are one face
_SAME_FACE_IOU = 0.5


class TrackingDetector:
    """``detect(image)`` like :class:`MTCNNDetector`, following faces between frames.

    Frames must come in order from one camera; call :meth:`reset` between unrelated
    sequences (the scene-change test catches most cases by itself).
    """

    def __init__(self, detector: MTCNNDetector, config: TrackingConfig | None = None) -> None:
        self.detector = detector
        self.tracking = config or TrackingConfig()
        self._lock = threading.Lock()
        #: what the last frame was: "full" or "tracked" (for benchmarks and tests)
        self.last_mode: Mode = "full"
        #: frames done each way since creation
        self.counts: dict[str, int] = {"full": 0, "tracked": 0}
        self.reset()

    @property
    def config(self) -> DetectorConfig:
        return self.detector.config

    def reset(self) -> None:
        """Forget the tracks: the next frame runs the full cascade."""
        self._tracks: list[Face] = []
        self._previous: list[Face | None] = []  # each track's box one frame earlier
        self._floor: list[float] = []  # each track's weakest acceptable score
        self._thumb: np.ndarray | None = None
        self._since_full = 0

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> TrackingDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, image: np.ndarray, *, color: Literal["rgb", "bgr"] = "rgb") -> list[Face]:
        """Faces in ``image`` (uint8 HxWx3 in ``color`` order), highest score first."""
        rgb = ensure_rgb_uint8(image, assume_bgr=(color == "bgr"))
        with self._lock:
            thumb = _thumbnail(rgb)
            changed = self._thumb is None or _difference(self._thumb, thumb) > (
                self.tracking.scene_change
            )
            self._thumb = thumb
            faces = None
            if self._tracks and not changed and self._since_full < self.tracking.full_every - 1:
                faces = self._follow(rgb)
            if faces is None:
                return self._full(rgb)
            self._since_full += 1
            self.last_mode = "tracked"
            self.counts["tracked"] += 1
            return faces

    def _full(self, rgb: np.ndarray) -> list[Face]:
        faces = self.detector.detect(rgb)
        self._previous = [None] * len(faces)
        self._tracks = faces
        self._floor = [min(self.tracking.min_score, f.score) for f in faces]
        self._since_full = 0
        self.last_mode = "full"
        self.counts["full"] += 1
        return faces

    def _follow(self, rgb: np.ndarray) -> list[Face] | None:
        """Every track's face in this frame, or None when one is lost or weak."""
        cfg = self.tracking
        found: list[Face] = []
        for track, before, floor in zip(self._tracks, self._previous, self._floor, strict=True):
            near = self.detector.detect_near(
                rgb, self._candidates(track, before), refine=cfg.refine, top_k=cfg.top_k
            )
            if not near or near[0].score < floor:
                return None
            found.append(near[0])
        keep = B.nms(
            np.array([f.box for f in found]), np.array([f.score for f in found]), _SAME_FACE_IOU
        )
        self._previous = [self._tracks[i] for i in keep]
        self._floor = [self._floor[i] for i in keep]
        self._tracks = [found[i] for i in keep]
        return sorted(self._tracks, key=lambda f: -f.score)

    def _candidates(self, track: Face, before: Face | None) -> np.ndarray:
        """Square boxes around where ``track`` should be now (its last motion continued)."""
        cx, cy = track.center
        if before is not None:
            m = self.tracking.momentum
            cx, cy = cx + m * (cx - before.center[0]), cy + m * (cy - before.center[1])
        side = max(track.width, track.height)
        cfg = self.tracking
        out = [
            (x - half, y - half, x + half, y + half)
            for scale in cfg.scales
            for half in (0.5 * side * scale,)
            for dy in cfg.shifts
            for dx in cfg.shifts
            for x, y in ((cx + dx * side, cy + dy * side),)
        ]
        return np.asarray(out, np.float32)


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The green channel (most of the luminance) of every 4th pixel, shrunk to ``_THUMB``:
    a tenth of the cost of a greyscale conversion of the whole frame."""
    green = np.ascontiguousarray(rgb[::4, ::4, 1])
    return cv2.resize(green, _THUMB, interpolation=cv2.INTER_AREA).astype(np.int16)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))
