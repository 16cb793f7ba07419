"""Decision thresholds measured on data, stored next to the model they belong to.

A threshold only means something for one embedding model and one alignment pipeline, so the
file names the embedding space and the source model's sha256 and the pipeline refuses a
calibration made for another model. Thresholds are picked so that the false accept rate on
real impostor pairs is at most the target (see :func:`threshold_for_far`).

Each threshold carries its *support*: how many impostor pairs were scored and how many of them
score at or above it. A threshold for FAR 1e-6 supported by 24 impostors above it out of 24 M is
an estimate with about 20 % relative error; one supported by 0 of 2 M is only a bound. The door
turns a target false-positive identification rate per attempt into a per-comparison FAR with
the gallery's size (:func:`far_for_fpir`) and looks the threshold up here
(:meth:`Calibration.threshold_at_most`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgeface.embedder.model import DEFAULT_FLIP
from edgeface.errors import ConfigError
from edgeface.storage import atomic_write

DEFAULT_FAR = 1e-3
#: the FARs a calibration is written for: 1, 2 and 5 per decade down to 1e-6
CALIBRATED_FARS: tuple[float, ...] = tuple(
    m * 10.0**e for e in range(-2, -7, -1) for m in (5, 2, 1) if m * 10.0**e <= 1e-2
)


def threshold_for_far(impostor_scores: np.ndarray, far: float) -> float:
    """Smallest threshold with (impostor scores >= threshold) / n <= ``far``.

    With n impostor scores the smallest reachable FAR is 1/n; asking for less returns a
    threshold just above the highest impostor score, which is as strict as the data can tell.
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ValueError("no impostor scores to calibrate on")
    allowed = int(np.floor(far * scores.size + 1e-9))
    if allowed >= scores.size:
        return float(scores[-1])
    # accept at most `allowed` impostors: threshold just above the (allowed+1)-th highest
    return float(np.nextafter(scores[allowed], np.inf))


def threshold_from_top(top_scores: np.ndarray, total: int, far: float) -> tuple[float, int]:
    """Like :func:`threshold_for_far` when only the highest impostor scores were kept.

    ``top_scores`` must hold every impostor score above the returned threshold (the caller keeps
    all scores above a low cut); ``total`` is how many impostor pairs were scored. Returns the
    threshold and the number of impostor scores at or above it (its support).
    """
    scores = np.sort(np.asarray(top_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(far * total + 1e-9))
    if allowed >= scores.size:
        raise ValueError(
            f"FAR {far:g} needs the top {allowed + 1} of {total} impostor scores, "
            f"only {scores.size} were kept"
        )
    thr = float(np.nextafter(scores[allowed], np.inf))
    return thr, int(np.count_nonzero(scores >= thr))


def far_for_fpir(target_fpir: float, gallery_size: int) -> float:
    """Per-comparison FAR that keeps the false-positive identification rate at ``target_fpir``.

    A probe of a stranger is compared with every enrolled identity; by the union bound
    FPIR <= N * FAR, so FAR = FPIR / N (exact enough for the small rates a door runs at).
    """
    return float(target_fpir) / max(int(gallery_size), 1)


@dataclass
class Calibration:
    """Cosine thresholds per target FAR for one embedding model + pipeline."""

    embedding_space: str
    model_sha256: str
    thresholds: dict[str, float]
    source: dict[str, object] = field(default_factory=dict)
    #: made with flip-averaged embeddings; scores shift with it, so thresholds do too
    flip: bool = DEFAULT_FLIP
    #: per FAR key: {"impostor_pairs": scored, "impostors_above": at or above the threshold}
    support: dict[str, dict[str, int]] = field(default_factory=dict)

    def threshold_at_most(self, far: float) -> tuple[float, str]:
        """The threshold of the largest calibrated FAR that does not exceed ``far``.

        Returns (threshold, FAR key). Asking for less than the smallest calibrated FAR returns
        the strictest threshold there is, with its key, so the caller can say so: nothing in
        the data supports a stricter estimate.
        """
        known = sorted(self.thresholds, key=float)
        fitting = [k for k in known if float(k) <= far * (1 + 1e-9)]
        key = fitting[-1] if fitting else known[0]
        return self.thresholds[key], key

    def threshold(self, far: float = DEFAULT_FAR) -> float:
        key = _far_key(far)
        if key not in self.thresholds:
            known = ", ".join(sorted(self.thresholds, key=float))
            raise ConfigError(f"no threshold calibrated for FAR {far:g} (have: {known})")
        return self.thresholds[key]

    def save(self, path: Path) -> None:
        """Write the calibration atomically: a crash never leaves a half file a door reads."""
        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        atomic_write(path, text.encode("utf-8"), mode=0o644, what="calibration")

    @classmethod
    def from_scores(
        cls,
        impostor_scores: np.ndarray,
        *,
        embedding_space: str,
        model_sha256: str,
        fars: tuple[float, ...] = (1e-2, 1e-3, 1e-4),
        source: dict[str, object] | None = None,
        flip: bool = DEFAULT_FLIP,
    ) -> Calibration:
        thresholds = {_far_key(f): _round_up(threshold_for_far(impostor_scores, f)) for f in fars}
        src = dict(source or {})
        src.setdefault("impostor_pairs", int(np.size(impostor_scores)))
        scores = np.asarray(impostor_scores, dtype=np.float64)
        support = {
            k: {"impostor_pairs": int(scores.size), "impostors_above": int(np.sum(scores >= t))}
            for k, t in thresholds.items()
        }
        return cls(embedding_space, model_sha256, thresholds, src, flip, support)

    @classmethod
    def from_top_scores(
        cls,
        top_scores: np.ndarray,
        total: int,
        *,
        embedding_space: str,
        model_sha256: str,
        fars: tuple[float, ...] = CALIBRATED_FARS,
        source: dict[str, object] | None = None,
        flip: bool = DEFAULT_FLIP,
    ) -> Calibration:
        """From every impostor pair (only the highest scores kept, ``total`` scored)."""
        thresholds: dict[str, float] = {}
        support: dict[str, dict[str, int]] = {}
        # float64, as the runtime compares a score with the threshold (float32 would round)
        top = np.asarray(top_scores, dtype=np.float64)
        for f in fars:
            t = _round_up(threshold_from_top(top, total, f)[0])
            thresholds[_far_key(f)] = t
            above = int(np.count_nonzero(top >= t))
            support[_far_key(f)] = {"impostor_pairs": int(total), "impostors_above": above}
        src = dict(source or {})
        src["impostor_pairs"] = int(total)
        return cls(embedding_space, model_sha256, thresholds, src, flip, support)


def _round_up(threshold: float) -> float:
    """Six decimals for the file, rounded *up*: rounding down could admit one more impostor."""
    return math.ceil(threshold * 1e6) / 1e6


def _far_key(far: float) -> str:
    return f"{far:.0e}"


def default_calibration_path(embedding_space: str, flip: bool = DEFAULT_FLIP) -> Path:
    """The packaged calibration of a model, one file per flip setting."""
    name = f"calibration/{embedding_space}{'' if flip else '.noflip'}.json"
    return Path(str(resources.files("edgeface_models").joinpath(name)))


def calibration_beside(model_path: Path, flip: bool = DEFAULT_FLIP) -> Path:
    """Where the calibration of a model file outside the manifest lives: next to it, as
    ``<file>.calibration.json`` (``.calibration.noflip.json`` without flip). Bundles install
    the embedder's own calibration there, and ``eval lfw --model FILE --write-calibration
    FILE.calibration.json`` writes one."""
    suffix = ".calibration.json" if flip else ".calibration.noflip.json"
    return model_path.with_name(model_path.name + suffix)


def load_calibration(
    path: Path | None = None, *, embedding_space: str | None = None, flip: bool = DEFAULT_FLIP
) -> Calibration:
    """Read a calibration file; missing or malformed files are ConfigError with the path."""
    if path is None:
        if embedding_space is None:
            raise ConfigError("load_calibration needs a path or an embedding space")
        path = default_calibration_path(embedding_space, flip)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        cal = Calibration(
            embedding_space=raw["embedding_space"],
            model_sha256=raw["model_sha256"],
            thresholds={str(k): float(v) for k, v in raw["thresholds"].items()},
            source=dict(raw.get("source", {})),
            # a file without the key predates flip: it was made without (not a default)
            flip=bool(raw.get("flip", False)),
            support={
                str(k): {str(a): int(b) for a, b in v.items()}
                for k, v in raw.get("support", {}).items()
            },
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no calibration file; create one with: "
            "edgeface eval lfw --write-calibration [--flip]"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid calibration file ({exc})") from exc
    return cal
