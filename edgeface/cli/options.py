"""Options every command spells the same way: ``--json`` is a switch (print JSON on stdout;
files are written with ``--out FILE``), ``--no-progress`` turns progress bars off.

Progress bars (tqdm, in the ``eval`` extra) go to stderr, only when it is a terminal and
tqdm is installed, so pipes and logs never get them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def progress(
    items: Iterable[T], args: argparse.Namespace, desc: str, total: int, unit: str = "img"
) -> Iterator[T]:
    """tqdm on stderr when available and wanted; the plain iterable otherwise."""
    if getattr(args, "no_progress", False) or not sys.stderr.isatty():
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield from items
        return
    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False)


def print_json(obj: Any, *, sort_keys: bool = False, ensure_ascii: bool = False) -> None:
    """``obj`` as indented JSON on stdout (what ``--json`` prints)."""
    print(json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=ensure_ascii))
