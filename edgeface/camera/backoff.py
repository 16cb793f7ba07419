"""Exponential backoff with jitter, shared by camera reconnects and the door lockout."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial, initial*factor, ...`` capped at ``maximum``; ``reset`` after success.

    Jitter (a fraction of the delay, drawn uniformly) keeps several units that lost the same
    network camera from reconnecting in lock-step.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        if self.jitter:
            base *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(base, self.maximum))

    def reset(self) -> None:
        self.attempts = 0
