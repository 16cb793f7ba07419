"""Test doubles of the door: a scripted :class:`Identifier`, a controllable clock and timers.

They lived in the runtime package (``edgeface/door/scripted.py``) and moved here (issue 14):
a door unit never needs them. Tests import them as ``from doubles import ...``; the benchmark
``bench/bench_door.py`` and ``scripts/arm64_check.py`` put this folder on ``sys.path`` first.

:class:`ScriptedIdentifier` plays back a list of observations (cycling), so the policy,
lockout, actuator and audit paths run exactly as in production without a model; it can also
raise on chosen calls to inject model faults.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeface.door.identify import Observation


def enrolled(
    identity: str = "id-alice", score: float = 0.8, threshold: float = 0.5, liveness: float = 0.99
) -> Observation:
    return Observation(identity, identity, score, threshold, 0.99, 120.0, liveness, 0.5)


def stranger(score: float = 0.2, threshold: float = 0.5, liveness: float = 0.99) -> Observation:
    return Observation(None, None, score, threshold, 0.99, 120.0, liveness, 0.5)


def spoof_of(identity: str = "id-alice", liveness: float = 0.1) -> Observation:
    """A printed photo of an enrolled person: matched, but below the liveness threshold."""
    return enrolled(identity, liveness=liveness)


class ScriptedIdentifier:
    def __init__(
        self,
        script: Sequence[Observation | BaseException],
        *,
        cycle: bool = True,
    ) -> None:
        if not script:
            raise ValueError("empty script")
        self.script = list(script)
        self.cycle = cycle
        self.calls = 0

    def identify(self, rgb: np.ndarray) -> Observation:
        if not self.cycle and self.calls >= len(self.script):
            item: Observation | BaseException = Observation.no_face(self.script[-1].threshold)  # type: ignore[union-attr]
        else:
            item = self.script[self.calls % len(self.script)]
        self.calls += 1
        if isinstance(item, BaseException):
            raise item
        return item


class FakeClock:
    """A controllable clock: ``clock()`` reads it, ``clock.sleep(dt)`` and ``advance`` move it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, float(dt))

    advance = sleep


class ManualTimer:
    """Stands in for ``threading.Timer`` so fail-secure re-lock timers follow a FakeClock."""

    def __init__(self, clock: FakeClock, registry: list[ManualTimer] | None = None) -> None:
        self.clock = clock
        self.registry = registry if registry is not None else []
        self.deadline = float("inf")
        self.fn: object = None
        self.cancelled = False
        self.started = False

    def factory(self, interval: float, fn: object) -> ManualTimer:
        t = ManualTimer(self.clock, self.registry)
        t.deadline, t.fn = self.clock() + interval, fn
        self.registry.append(t)
        return t

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire_due(self) -> int:
        """Run every started, uncancelled timer whose deadline has passed; return how many."""
        n = 0
        for t in list(self.registry):
            if t.started and not t.cancelled and self.clock() >= t.deadline:
                t.cancelled = True
                t.fn()  # type: ignore[operator]
                n += 1
        return n
