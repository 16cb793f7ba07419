"""Options and output shared by every ``edgeface eval`` action.

A module of its own so that the action modules (:mod:`edgeface.cli.eval_recognition`,
:mod:`edgeface.cli.eval_liveness`) and :mod:`edgeface.cli.eval_cmd`, which registers them,
import it rather than each other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeface.cli.options import add_progress_option, progress
from edgeface.errors import StorageError

__all__ = ["add_common_options", "progress", "write_json"]


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="DIR",
        help="data folder holding lfw/ and detection/ (default: $EDGEFACE_DATA_DIR or "
        "../shared/data)",
    )
    p.add_argument("--out", metavar="JSON", help="write the full report as JSON here")
    add_progress_option(p)


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    """Atomic write, so an interrupted run never leaves half a report behind."""
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise StorageError(f"{out}: cannot write report ({exc.strerror or exc})") from exc
