"""``--liveness`` for verify, identify and detect: one option, one check, one message."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from edgeface.errors import SpoofError


def add_liveness_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--liveness",
        action="store_true",
        help="check that each face is a live person (MiniFASNet pair); a printed photo or a "
        "screen is refused with exit code 18 (detect: reported per face)",
    )
    p.add_argument(
        "--liveness-threshold",
        type=float,
        metavar="T",
        help="threshold on the live score (default: the calibrated one, BPCER 2 %%)",
    )


def liveness_checker(args: argparse.Namespace) -> Any:
    """The checker when ``--liveness`` was given, else None."""
    if not getattr(args, "liveness", False):
        return None
    from edgeface.liveness import LivenessChecker, LivenessConfig

    return LivenessChecker.from_config(LivenessConfig(threshold=args.liveness_threshold))


def refuse_spoof(checker: Any, image: np.ndarray, face: Any, name: str) -> dict[str, object]:
    """The face's liveness result; raises :class:`SpoofError` when it is not live."""
    res = checker.check(image, face)
    if not res.live:
        raise SpoofError(
            f"{name}: the face is not live (liveness {res.score:.3f} < {res.threshold:.3f}): "
            "a printed photo or a screen?"
        )
    return res.to_dict()
