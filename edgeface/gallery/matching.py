"""1:N search: cosine similarity against every template, best template per identity, top-k,
and the open-set decision ("unknown" below the calibrated threshold).

The search is one BLAS matrix-vector product over a contiguous float32 matrix, which is
memory-bound (100k people x 3 templates x 128 floats = 154 MB read per probe). To make the
"best template per identity" step nearly free, the matrix is stored *slot-major*: identities
are sorted by template count (most first); block 0 holds every identity's first template,
block 1 the second template of the identities that have one (a prefix of that order), and so
on. The per-identity maximum is then ``max(block0, block1[:n1], ...)`` on contiguous slices:
no ``reduceat`` over a 300k vector and no padding. Scores are cosines because both the
templates and the probe are unit vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: queries scored together in one matrix product; bounds the (Q x T) score buffer
_QUERY_BLOCK = 32


@dataclass(frozen=True)
class Match:
    identity_id: str
    name: str
    score: float

    def to_dict(self) -> dict[str, object]:
        return {"id": self.identity_id, "name": self.name, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Decision:
    """Outcome of open-set identification for one probe."""

    candidates: list[Match]  # top-k, best first (may be empty for an empty gallery)
    threshold: float

    @property
    def best(self) -> Match | None:
        return self.candidates[0] if self.candidates else None

    @property
    def known(self) -> bool:
        return self.best is not None and self.best.score >= self.threshold

    @property
    def label(self) -> str:
        """The matched display name, or ``"unknown"``."""
        return self.best.name if self.known and self.best else "unknown"

    def to_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "known": self.known,
            "id": self.best.identity_id if self.known and self.best else None,
            "score": round(self.best.score, 4) if self.best else None,
            "threshold": round(self.threshold, 4),
            "candidates": [m.to_dict() for m in self.candidates],
        }


class Matcher:
    """Immutable search index over a gallery's templates."""

    def __init__(
        self,
        emb: np.ndarray,
        counts: np.ndarray,
        ids: Sequence[str],
        names: Sequence[str],
    ) -> None:
        """``emb`` (T, D): rows grouped by identity in the order of ``counts``/``ids``."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.size and counts.min() < 1:
            raise ValueError("every identity needs at least one template")
        if int(counts.sum()) != len(emb):
            raise ValueError("template counts do not match the embedding rows")
        self.dim = int(emb.shape[1]) if emb.ndim == 2 else 0
        self._order = np.argsort(-counts, kind="stable")  # slot position -> identity index
        sorted_counts = counts[self._order]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        n_slots = int(sorted_counts[0]) if counts.size else 0
        # block j: identities (in sorted order) with more than j templates; a prefix
        self._sizes = [int(np.count_nonzero(sorted_counts > j)) for j in range(n_slots)]
        rows = np.concatenate(
            [starts[self._order[:m]] + j for j, m in enumerate(self._sizes)]
            or [np.zeros(0, np.int64)]
        )
        self._mat = np.ascontiguousarray(np.asarray(emb, dtype=np.float32)[rows])
        self._ids = [ids[i] for i in self._order]
        self._names = [names[i] for i in self._order]

    @classmethod
    def of_labels(cls, templates: Mapping[str, np.ndarray]) -> Matcher:
        """An index over ``label -> (M, D)`` unit templates (a label is its own id and name);
        labels without a template are left out. For callers that hold plain arrays, such as
        ``FacePipeline.identify``, so that 1:N ranking is written once."""
        rows = {k: np.atleast_2d(np.asarray(t, np.float32)) for k, t in templates.items() if len(t)}
        if not rows:
            return cls(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), [], [])
        labels = list(rows)
        counts = np.array([len(rows[k]) for k in labels], np.int64)
        return cls(np.concatenate([rows[k] for k in labels]), counts, labels, labels)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def n_templates(self) -> int:
        return len(self._mat)

    @property
    def nbytes(self) -> int:
        return int(self._mat.nbytes)

    def _normalize(self, probes: np.ndarray) -> np.ndarray:
        q = np.asarray(probes, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        # an empty gallery has nothing to compare with, whatever the probe's size
        if q.ndim != 2 or (q.shape[1] != self.dim and self._ids):
            raise ValueError(f"probe must have {self.dim} values, got shape {q.shape}")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        return q / np.maximum(norms, 1e-12)

    def scores(self, probes: np.ndarray) -> np.ndarray:
        """(Q, N) best cosine per identity, columns in *index* order (see :meth:`ids`)."""
        q = self._normalize(probes)
        out = np.empty((len(q), len(self._ids)), np.float32)
        if not self._ids:
            return out
        for a in range(0, len(q), _QUERY_BLOCK):
            qb = q[a : a + _QUERY_BLOCK]
            s = self._mat @ qb[0] if len(qb) == 1 else qb @ self._mat.T
            s = s.reshape(len(qb), -1)
            best = out[a : a + len(qb)]
            best[:] = s[:, : self._sizes[0]]
            pos = self._sizes[0]
            for m in self._sizes[1:]:
                np.maximum(best[:, :m], s[:, pos : pos + m], out=best[:, :m])
                pos += m
        return out

    @property
    def ids(self) -> list[str]:
        """Identity ids in the column order of :meth:`scores`."""
        return list(self._ids)

    def _top(self, row: np.ndarray, k: int) -> list[Match]:
        k = min(k, len(row))
        if k <= 0:
            return []
        idx = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        idx = idx[np.argsort(-row[idx], kind="stable")]
        return [Match(self._ids[i], self._names[i], float(row[i])) for i in idx]

    def search(self, probe: np.ndarray, k: int = 5) -> list[Match]:
        """Top-k identities for one probe, best first."""
        return self._top(self.scores(probe)[0], k)

    def search_many(self, probes: np.ndarray, k: int = 5) -> list[list[Match]]:
        return [self._top(row, k) for row in self.scores(probes)]

    def decide(self, probe: np.ndarray, threshold: float, k: int = 5) -> Decision:
        """Open-set identification: the best identity if its score reaches ``threshold``."""
        return Decision(self.search(probe, max(k, 1)), float(threshold))
