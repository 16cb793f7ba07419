"""Enrollment quality: face size, sharpness and head pose, from what the pipeline already has.

A template is what every later probe is compared with, so one bad enrollment photo costs
accuracy for as long as the person stays enrolled. The gates are cheap and explainable:

* **size**: the smaller side of the detected box in pixels (tiny faces embed poorly);
* **sharpness**: variance of the Laplacian of the aligned 112x112 grey crop. Measuring on the
  aligned crop makes the number independent of the photo's resolution and of the background;
* **pose** from the five landmarks, after removing in-plane roll (the aligner undoes roll
  anyway): *yaw* is the left/right asymmetry of the nose between the eyes,
  ``(d_left - d_right) / (d_left + d_right)`` (0 frontal, +-1 when the nose reaches an eye);
  *pitch* is where the nose sits between the eye line and the mouth line (about 0.5 for a
  level head; small = looking up, large = looking down).

The default limits were set on 250 random LFW dev images (numbers in docs/gallery.md): they
pass 99 % of them on size, sharpness and pitch and 94 % on yaw (91 % on all gates), while a
Gaussian blur of sigma 2 px on the 250 px photo fails the sharpness gate 98 % of the time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edgeface.face_sizes import ENROLL_MIN_FACE
from edgeface.types import Face


@dataclass(frozen=True)
class QualityGates:
    """Limits a face must meet to become a template."""

    #: smallest face that becomes a template (see :mod:`edgeface.face_sizes`)
    min_face_size: float = ENROLL_MIN_FACE
    min_sharpness: float = 40.0
    max_yaw: float = 0.6
    min_pitch: float = 0.25
    max_pitch: float = 0.8
    min_detection_score: float = 0.90


@dataclass(frozen=True)
class FaceQuality:
    size: float
    sharpness: float
    yaw: float
    pitch: float
    roll_deg: float
    detection_score: float

    def failures(self, gates: QualityGates) -> list[str]:
        """Human-readable reasons this face fails ``gates`` (empty = acceptable)."""
        out = []
        if self.size < gates.min_face_size:
            out.append(f"face too small ({self.size:.0f} px < {gates.min_face_size:.0f} px)")
        if self.sharpness < gates.min_sharpness:
            out.append(f"too blurred (sharpness {self.sharpness:.0f} < {gates.min_sharpness:.0f})")
        if abs(self.yaw) > gates.max_yaw:
            out.append(f"head turned sideways (yaw {self.yaw:+.2f}, limit {gates.max_yaw:.2f})")
        if not gates.min_pitch <= self.pitch <= gates.max_pitch:
            out.append(
                f"head tilted up/down (pitch {self.pitch:.2f}, "
                f"allowed {gates.min_pitch:.2f}..{gates.max_pitch:.2f})"
            )
        if self.detection_score < gates.min_detection_score:
            out.append(f"uncertain detection (score {self.detection_score:.2f})")
        return out

    def score(self, gates: QualityGates) -> float:
        """One number in [0, 1] to rank templates (keep the best N); not a probability."""
        size = min(1.0, self.size / 112.0)
        sharp = min(1.0, self.sharpness / (4.0 * gates.min_sharpness))
        pose = max(0.0, 1.0 - abs(self.yaw) / max(gates.max_yaw, 1e-6) * 0.5)
        pitch = max(0.0, 1.0 - abs(self.pitch - 0.5) * 2.0 * 0.5)
        return float(self.detection_score * size * sharp * pose * pitch)

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in asdict(self).items()}


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher = sharper)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw asymmetry, pitch ratio, roll in degrees) from 5 landmarks (image order)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    le, re_, nose, ml, mr = pts
    roll = math.atan2(re_[1] - le[1], re_[0] - le[0])
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    le, re_, nose, ml, mr = (pts - pts[:2].mean(axis=0)) @ rot.T
    dl, dr = nose[0] - le[0], re_[0] - nose[0]
    yaw = (dl - dr) / max(abs(dl) + abs(dr), 1e-6)
    eye_y = (le[1] + re_[1]) / 2.0
    mouth_y = (ml[1] + mr[1]) / 2.0
    pitch = (nose[1] - eye_y) / max(mouth_y - eye_y, 1e-6)
    return float(yaw), float(pitch), math.degrees(roll)


def assess(face: Face, crop: np.ndarray) -> FaceQuality:
    """Quality of one detected face given its aligned crop."""
    yaw, pitch, roll = pose(face.landmarks)
    return FaceQuality(
        size=float(face.size),
        sharpness=sharpness(crop),
        yaw=yaw,
        pitch=pitch,
        roll_deg=roll,
        detection_score=float(face.score),
    )
