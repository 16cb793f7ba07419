"""Decision thresholds measured on data, stored next to the model they belong to.

A threshold only means something for one embedding model and one alignment pipeline, so the
file names the embedding space and the source model's sha256 and the pipeline refuses a
calibration made for another model. Thresholds are picked so that the false accept rate on
real impostor pairs is at most the target (see :func:`threshold_for_far`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgeface.errors import ConfigError

DEFAULT_FAR = 1e-3


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


@dataclass
class Calibration:
    """Cosine thresholds per target FAR for one embedding model + pipeline."""

    embedding_space: str
    model_sha256: str
    thresholds: dict[str, float]
    source: dict[str, object] = field(default_factory=dict)
    #: made with flip-averaged embeddings; scores shift with it, so thresholds do too
    flip: bool = False

    def threshold(self, far: float = DEFAULT_FAR) -> float:
        key = _far_key(far)
        if key not in self.thresholds:
            known = ", ".join(sorted(self.thresholds, key=float))
            raise ConfigError(f"no threshold calibrated for FAR {far:g} (have: {known})")
        return self.thresholds[key]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_scores(
        cls,
        impostor_scores: np.ndarray,
        *,
        embedding_space: str,
        model_sha256: str,
        fars: tuple[float, ...] = (1e-2, 1e-3, 1e-4),
        source: dict[str, object] | None = None,
        flip: bool = False,
    ) -> Calibration:
        thresholds = {_far_key(f): round(threshold_for_far(impostor_scores, f), 6) for f in fars}
        src = dict(source or {})
        src.setdefault("impostor_pairs", int(np.size(impostor_scores)))
        return cls(embedding_space, model_sha256, thresholds, src, flip)


def _far_key(far: float) -> str:
    return f"{far:.0e}"


def default_calibration_path(embedding_space: str, flip: bool = True) -> Path:
    """The packaged calibration of a model, one file per flip setting."""
    name = f"calibration/{embedding_space}{'' if flip else '.noflip'}.json"
    return Path(str(resources.files("edgeface_models").joinpath(name)))


def calibration_beside(model_path: Path, flip: bool = True) -> Path:
    """Where the calibration of a model file outside the manifest lives: next to it, as
    ``<file>.calibration.json`` (``.calibration.noflip.json`` without flip). Bundles install
    the embedder's own calibration there, and ``eval lfw --model FILE --write-calibration
    FILE.calibration.json`` writes one."""
    suffix = ".calibration.json" if flip else ".calibration.noflip.json"
    return model_path.with_name(model_path.name + suffix)


def load_calibration(
    path: Path | None = None, *, embedding_space: str | None = None, flip: bool = True
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
            flip=bool(raw.get("flip", False)),
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no calibration file; create one with: "
            "edgeface eval lfw --write-calibration [--flip]"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid calibration file ({exc})") from exc
    return cal
