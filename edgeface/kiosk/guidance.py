"""Plain-language hints for the person in front of the kiosk, computed from one analyzed frame.

The hints reuse the enrollment quality measures (:mod:`edgeface.gallery.quality`), so what
the screen asks for ("face the camera") is exactly what the enrollment gates check. The order
matters: the first problem the person can fix is the one shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeface.gallery.quality import QualityGates, assess

#: mean grey level (0-255) of the face box below which the picture is "too dark"
DARK_LEVEL = 50.0

MESSAGES = {
    "none": "Look at the camera",
    "one_person": "Only one person, please",
    "too_dark": "Too dark: more light on your face, please",
    "closer": "Come closer",
    "face_camera": "Face the camera",
    "hold_still": "Hold still",
    "ok": "Hold still",
    # set by the engine, not by guide(): the liveness check judged the face a photo or screen
    "not_live": "Not a live face: use your own face, not a photo or a screen",
}


@dataclass(frozen=True)
class Guidance:
    code: str
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def text(self) -> str:
        return MESSAGES[self.code]

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def brightness(rgb: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean grey level inside ``box`` (clipped to the image)."""
    h, w = rgb.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(box[2])), min(h, int(box[3]))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    return float(cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY).mean())


def guide(rgb: np.ndarray, faces: Sequence[Any], gates: QualityGates, min_face: float) -> Guidance:
    """``faces``: the pipeline's ``analyze`` results (``face``, ``crop``), largest first."""
    boxes = tuple(tuple(float(v) for v in r.face.box) for r in faces)
    if not faces:
        return Guidance("none")
    main = faces[0]
    # a second face at least half as big as the first is someone else standing there;
    # small faces far behind are ignored (enrollment ignores them too)
    others = [r for r in faces[1:] if r.face.size >= 0.5 * main.face.size]
    if others:
        return Guidance("one_person", boxes)
    if brightness(rgb, main.face.box) < DARK_LEVEL:
        return Guidance("too_dark", boxes)
    if main.face.size < min_face:
        return Guidance("closer", boxes)
    q = assess(main.face, main.crop)
    if abs(q.yaw) > gates.max_yaw or not gates.min_pitch <= q.pitch <= gates.max_pitch:
        return Guidance("face_camera", boxes)
    if q.sharpness < gates.min_sharpness:
        return Guidance("hold_still", boxes)
    return Guidance("ok", boxes)
