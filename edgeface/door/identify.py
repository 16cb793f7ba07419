"""What the door needs from recognition: one :class:`Observation` per frame.

The daemon depends on the tiny :class:`Identifier` protocol, not on the detector, embedder or
gallery, so the policy and the daemon loop are tested with a scripted identifier, and the real
one (:class:`edgeface.door.pipeline_identifier.PipelineIdentifier`) is a thin adapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Observation:
    """The best face of one frame and its best gallery match.

    ``identity_id`` is set only when ``score >= threshold``; ``score`` is the best cosine
    similarity even below the threshold (NaN when no face was embedded), so the audit log can
    show how close a rejected face came. ``quality`` is the detector confidence; ``face_size``
    the face's smaller box side in pixels (0 = no face). ``liveness`` is the fused live score
    of the face (0..1) and ``liveness_threshold`` the score it must reach; both None when no
    liveness check ran (a door that requires liveness never counts such a frame).
    """

    identity_id: str | None
    name: str | None
    score: float
    threshold: float
    quality: float
    face_size: float
    liveness: float | None = None
    liveness_threshold: float | None = None

    @property
    def has_face(self) -> bool:
        return self.face_size > 0

    @property
    def matched(self) -> bool:
        return (
            self.identity_id is not None
            and not math.isnan(self.score)
            and self.score >= self.threshold
        )

    @property
    def live(self) -> bool:
        """The face passed the liveness check (False when none ran: fail closed)."""
        return (
            self.liveness is not None
            and self.liveness_threshold is not None
            and self.liveness >= self.liveness_threshold
        )

    @classmethod
    def no_face(cls, threshold: float) -> Observation:
        return cls(None, None, float("nan"), threshold, 0.0, 0.0)


@runtime_checkable
class Identifier(Protocol):
    """Turns an RGB frame into an :class:`Observation`. May raise ModelError."""

    def identify(self, rgb: np.ndarray) -> Observation: ...


def observation_fields(obs: Observation | None) -> dict[str, Any]:
    """An observation as audit-record fields (door and kiosk write the same ones)."""
    if obs is None:
        return {}
    fields: dict[str, Any] = {
        "identity_id": obs.identity_id,
        "score": obs.score,
        "threshold": obs.threshold,
        "quality": obs.quality,
        "face_size": obs.face_size,
    }
    if obs.liveness is not None:
        fields["liveness"] = round(obs.liveness, 5)
        fields["liveness_threshold"] = obs.liveness_threshold
    return fields
