"""The unlock decision, as a pure state machine with an injectable clock.

Why k-of-n: at a FAR of 1e-3 per comparison a stranger standing in front of the camera for a
minute at 5 fps gets about 0.3 false matches; requiring the *same* identity in ``k`` of the last
``n`` usable frames within ``window_s`` makes that (for independent frames) about
C(n,k)·FAR^k ≈ 1e-8 per window. Frames are not independent, which is why ``k`` should stay >= 3
and the threshold comes from an impostor calibration, not from guesswork.

Failed attempts (for the anti-hammering lockout) are counted per *attempt*, not per frame: an
attempt ends after ``n`` usable frames or a gap longer than ``window_s``, and fails if it had an
unmatched face and did not unlock. Otherwise a stranger would trigger the lockout in one second.

Liveness (``require_liveness``): a frame counts towards the k votes only if its face passed
the liveness check, and an unlock also needs the mean liveness of the k voting frames to reach
the threshold. A frame judged a spoof is reported on its own (``Verdict.SPOOF``, audited with
its score) and makes the attempt a failed one (``reason="spoof"``), which feeds the lockout like
an unknown face does: holding a photo to the camera costs attempts, per attempt, so one live
frame that scores low does not lock an enrolled person out.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from edgeface.door.config import PolicyConfig
from edgeface.door.identify import Observation


class Verdict(str, Enum):
    IDLE = "idle"  # no face
    IGNORED = "ignored"  # face too small or too blurry to judge
    PENDING = "pending"  # votes accumulating
    UNLOCK = "unlock"
    REJECTED = "rejected"  # an attempt ended without an unlock and with unknown faces
    OPEN = "open"  # the door is already unlocked
    COOLDOWN = "cooldown"  # just relocked; no new unlock yet
    RELOCK = "relock"
    SPOOF = "spoof"  # a face judged not live (printed photo, screen): never a vote


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    time: float
    observation: Observation | None = None
    identity_id: str | None = None
    votes: int = 0
    #: why an attempt was rejected: "unknown" face or "spoof"
    reason: str | None = None

    @property
    def unlocks(self) -> bool:
        return self.verdict is Verdict.UNLOCK


class DecisionPolicy:
    """Feed every processed frame to :meth:`observe`; call :meth:`tick` often for re-locking."""

    def __init__(
        self,
        cfg: PolicyConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        require_liveness: bool = False,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.require_liveness = require_liveness
        #: (time, voted identity or None, liveness score or None) of the last n usable frames
        self.history: deque[tuple[float, str | None, float | None]] = deque(maxlen=cfg.n)
        self.unlocked_until: float | None = None
        self.cooldown_until = float("-inf")
        self._attempt_frames = 0
        self._attempt_unknown = False
        self._attempt_spoof = False
        self._last_face_t = float("-inf")

    @property
    def is_unlocked(self) -> bool:
        return self.unlocked_until is not None

    def reset(self) -> None:
        """Forget votes and the attempt in progress (after a lockout or a camera loss)."""
        self.history.clear()
        self._attempt_frames = 0
        self._attempt_unknown = False
        self._attempt_spoof = False

    def force_lock(self, now: float | None = None) -> None:
        """The daemon re-locked for a fault: start the cooldown as if the timer had expired."""
        now = self.clock() if now is None else now
        if self.unlocked_until is not None:
            self.unlocked_until = None
            self.cooldown_until = now + self.cfg.cooldown_s
        self.reset()

    def tick(self, now: float | None = None) -> Decision | None:
        """Re-lock when the unlock time is over; end a stale attempt. Returns what changed."""
        now = self.clock() if now is None else now
        if self.unlocked_until is not None and now >= self.unlocked_until:
            self.unlocked_until = None
            self.cooldown_until = now + self.cfg.cooldown_s
            self.reset()
            return Decision(Verdict.RELOCK, now)
        if self._attempt_frames and now - self._last_face_t > self.cfg.window_s:
            return self._end_attempt(now, None)
        return None

    def _end_attempt(self, now: float, obs: Observation | None) -> Decision | None:
        failed = self._attempt_unknown or self._attempt_spoof
        reason = "spoof" if self._attempt_spoof else "unknown"
        self._attempt_frames = 0
        self._attempt_unknown = False
        self._attempt_spoof = False
        return Decision(Verdict.REJECTED, now, obs, reason=reason) if failed else None

    def _mean_liveness(self, ident: str) -> float:
        """Mean liveness of the last k frames that voted for ``ident``."""
        scores = [lv for _, i, lv in self.history if i == ident][-self.cfg.k :]
        if not scores or any(lv is None for lv in scores):
            return float("nan")
        return sum(scores) / len(scores)  # type: ignore[arg-type]

    def usable(self, obs: Observation) -> bool:
        return (
            obs.has_face
            and obs.face_size >= self.cfg.min_face_size
            and obs.quality >= self.cfg.min_quality
        )

    def observe(self, obs: Observation, now: float | None = None) -> Decision:
        now = self.clock() if now is None else now
        changed = self.tick(now)
        if changed is not None:
            # RELOCK, or REJECTED for an attempt that went stale; the daemon normally calls
            # tick() first, so this frame is only skipped when it did not (conservative).
            return changed
        if self.unlocked_until is not None:
            return Decision(Verdict.OPEN, now, obs)
        if not self.usable(obs):
            verdict = Verdict.IGNORED if obs.has_face else Verdict.IDLE
            return Decision(verdict, now, obs)
        if now < self.cooldown_until:
            return Decision(Verdict.COOLDOWN, now, obs)
        while self.history and now - self.history[0][0] > self.cfg.window_s:
            self.history.popleft()
        spoof = self.require_liveness and not obs.live
        ident = obs.identity_id if obs.matched and not spoof else None
        self.history.append((now, ident, obs.liveness))
        self._last_face_t = now
        self._attempt_frames += 1
        if spoof:
            self._attempt_spoof = True
            if self._attempt_frames >= self.cfg.n:
                return self._end_attempt(now, obs)  # type: ignore[return-value]
            return Decision(Verdict.SPOOF, now, obs, obs.identity_id, reason="spoof")
        if ident is None:
            self._attempt_unknown = True
        votes = Counter(i for _, i, _ in self.history if i is not None)
        live_enough = not self.require_liveness or (
            self._mean_liveness(ident or "") >= (obs.liveness_threshold or 0.0)
        )
        if ident is not None and votes[ident] >= self.cfg.k and live_enough:
            self.unlocked_until = now + self.cfg.unlock_s
            self.reset()
            return Decision(Verdict.UNLOCK, now, obs, ident, votes[ident])
        if self._attempt_frames >= self.cfg.n:
            rejected = self._end_attempt(now, obs)
            if rejected is not None:
                return rejected
        best = votes.most_common(1)
        return Decision(
            Verdict.PENDING, now, obs, best[0][0] if best else None, best[0][1] if best else 0
        )
