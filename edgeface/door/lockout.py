"""Anti-hammering: pause recognition after repeated failed attempts, with exponential backoff.

Someone cycling photos or faces in front of the camera gets ``failures`` tries per
``window_s``; then recognition stops for ``pause_s``, doubling on each repeated lockout up to
``max_pause_s``. Tracked per source (one camera being hammered) and globally (several cameras
attacked together count against one budget). While locked out no frame is even embedded, so
a lockout also bounds how many guesses an attacker can make per hour.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeface.door.config import LockoutConfig

GLOBAL = "*"


@dataclass
class Tracker:
    limit: int
    window_s: float
    failures: deque[float] = field(default_factory=deque)
    level: int = 0
    until: float = float("-inf")
    last_event: float = float("-inf")


@dataclass(frozen=True)
class LockoutEvent:
    scope: str  # a source name, or "*" for the global budget
    started: float
    until: float
    level: int

    @property
    def pause_s(self) -> float:
        return self.until - self.started


class Lockout:
    def __init__(self, cfg: LockoutConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.trackers: dict[str, Tracker] = {GLOBAL: Tracker(cfg.global_failures, cfg.window_s)}
        #: sources locked out whose end :meth:`ended` has not reported yet
        self._unannounced: set[str] = set()

    def _tracker(self, scope: str) -> Tracker:
        if scope not in self.trackers:
            self.trackers[scope] = Tracker(self.cfg.failures, self.cfg.window_s)
        return self.trackers[scope]

    def record_failure(self, source: str, now: float | None = None) -> list[LockoutEvent]:
        """Count one failed attempt from ``source``; return the lockouts it starts."""
        now = self.clock() if now is None else now
        started = []
        for scope in (source, GLOBAL):
            t = self._tracker(scope)
            if now < t.until:
                continue
            if t.level and now - max(t.last_event, t.until) > self.cfg.reset_after_s:
                t.level = 0  # a long quiet period forgives earlier lockouts
            t.last_event = now
            t.failures.append(now)
            while t.failures and now - t.failures[0] > t.window_s:
                t.failures.popleft()
            if len(t.failures) >= t.limit:
                pause = min(self.cfg.max_pause_s, self.cfg.pause_s * 2**t.level)
                t.until = now + pause
                t.level += 1
                t.failures.clear()
                started.append(LockoutEvent(scope, now, t.until, t.level))
        if started:
            self._unannounced.add(source)
        return started

    def record_success(self, source: str) -> None:
        """An enrolled person got in: forget this source's failures and backoff level."""
        t = self._tracker(source)
        t.failures.clear()
        t.level = 0

    def active(self, source: str, now: float | None = None) -> LockoutEvent | None:
        """The lockout currently blocking ``source`` (the longest one), or None."""
        now = self.clock() if now is None else now
        best = None
        for scope in (source, GLOBAL):
            t = self._tracker(scope)
            if now < t.until and (best is None or t.until > best.until):
                best = LockoutEvent(scope, now, t.until, t.level)
        return best

    def until(self, source: str, now: float | None = None) -> float | None:
        """When the lockout blocking ``source`` ends (clock seconds), None when none does.

        Reads only (no tracker is created), so another thread may ask."""
        now = self.clock() if now is None else now
        trackers = (self.trackers.get(scope) for scope in (source, GLOBAL))
        return max((t.until for t in trackers if t is not None and now < t.until), default=None)

    def ended(self, source: str, now: float | None = None) -> bool:
        """True once, at the first call after every lockout that blocked ``source`` is over
        (the door audits ``lockout_end`` then); False otherwise."""
        if source not in self._unannounced or self.until(source, now) is not None:
            return False
        self._unannounced.discard(source)
        return True
