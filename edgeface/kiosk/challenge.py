"""Active liveness for the kiosk: after a match, turn the head to a side chosen at random.

The passive check (:mod:`edgeface.liveness`) judges one frame at a time; a good screen replay
can pass it. A replay is fixed in advance, a person is not: once the k-of-n policy matches,
the kiosk asks for a head turn to the left or the right, drawn with :mod:`secrets`, and
welcomes only when the *same* face (its centre moves at most ``max_step`` face widths from one
frame to the next, so a second photo or person cannot take over) turns far enough to that side
and looks back, within ``timeout_s``, every frame live, the face recognized again as the
matched person when it is back. A pre-recorded video turns the wrong way half the time,
and a turn to the wrong side fails at once (and counts for the lockout like any failed
attempt), so repeated replays run into the pause.

The turn is read from the five landmarks (:func:`edgeface.gallery.quality.pose`): the nose
moves towards the eye on the side the head turns to. A printed photo tilted about its vertical
axis mostly narrows the face evenly, so the nose stays between the eyes; perspective moves it
a little, and on a few photos as far as a turn (tests/test_kiosk_challenge.py measures it):
prints remain the passive check's job. The side is the person's own (their left is the
image's right: the camera is not a mirror), so the instruction is the same whether or not the
screen mirrors the preview.

What it does not stop: a live person wearing a mask, an interactive deepfake, a video that
happens to turn the right way (one attempt in two; the lockout bounds the tries), the few
prints whose tilt moves the landmarks like a turn (when they also pass the passive check).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from enum import Enum

from edgeface.gallery.quality import pose
from edgeface.types import Face

LEFT, RIGHT = "left", "right"
SIDES = (LEFT, RIGHT)
KINDS = ("none", "head_turn")


@dataclass(frozen=True)
class ChallengeConfig:
    """``[verify] challenge = "head_turn"`` and its limits (off by default)."""

    kind: str = "none"
    #: the landmark yaw (see :func:`~edgeface.gallery.quality.pose`) a turn has to reach
    turn_yaw: float = 0.45
    timeout_s: float = 8.0
    #: largest move of the face centre between two frames, in face widths
    max_step: float = 0.6

    @property
    def enabled(self) -> bool:
        return self.kind == "head_turn"


class Status(Enum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    status: Status
    #: why it failed: ``timeout``, ``wrong_side``, ``face_changed`` or ``spoof``
    reason: str = ""
    yaw: float | None = None


def random_side() -> str:
    return secrets.choice(SIDES)


class HeadTurn:
    """One challenge, from the matching frame to passed or failed. Pure: frames in, a
    :class:`Step` out; the kiosk engine owns the screen, the audit and the lockout.

    Two phases: *turn* (the yaw moves at least ``turn_yaw`` from where it was at the match,
    towards the asked side; as far the other way fails at once), then *back* (the head
    returns to within half that of where it started, and that frame is recognized as the
    matched person again). Relative to the start, so a face that arrives already turned does
    not pass without moving."""

    def __init__(
        self,
        cfg: ChallengeConfig,
        *,
        identity_id: str,
        face: Face,
        now: float,
        side: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity_id = identity_id
        self.side = side if side is not None else random_side()
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {self.side!r}")
        self.deadline = now + cfg.timeout_s
        self.baseline = pose(face.landmarks)[0]
        # yaw grows as the nose nears the eye on the image's right: the person's left
        self._sign = 1.0 if self.side == LEFT else -1.0
        self._last = face
        #: the yaw of the frame that completed the turn (None while it has not)
        self.turned_yaw: float | None = None

    @property
    def turned(self) -> bool:
        return self.turned_yaw is not None

    def remaining(self, now: float) -> float:
        return max(0.0, self.deadline - now)

    def step(self, face: Face | None, live: bool | None, now: float, same: bool = False) -> Step:
        """One frame: ``face`` is the chosen face (None when there is none), ``live`` the
        passive liveness verdict on it (None when liveness is off), ``same`` whether it was
        recognized as the matched person (only looked at once the head has turned)."""
        if now >= self.deadline:
            return Step(Status.FAILED, "timeout")
        if face is None:
            return Step(Status.PENDING)
        if live is False:
            return Step(Status.FAILED, "spoof")
        if not self._continues(face):
            return Step(Status.FAILED, "face_changed")
        self._last = face
        yaw = pose(face.landmarks)[0]
        moved = self._sign * (yaw - self.baseline)
        if not self.turned:
            if moved <= -self.cfg.turn_yaw:
                return Step(Status.FAILED, "wrong_side", yaw=yaw)
            if moved >= self.cfg.turn_yaw:
                self.turned_yaw = yaw
            return Step(Status.PENDING, yaw=yaw)
        if abs(yaw - self.baseline) <= self.cfg.turn_yaw / 2 and same:
            return Step(Status.PASSED, yaw=yaw)
        return Step(Status.PENDING, yaw=yaw)

    def _continues(self, face: Face) -> bool:
        (x0, y0), (x1, y1) = self._last.center, face.center
        width = max(self._last.width, face.width, 1.0)
        return math.hypot(x1 - x0, y1 - y0) <= self.cfg.max_step * width
