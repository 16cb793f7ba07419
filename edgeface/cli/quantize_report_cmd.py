"""``edgeface quantize report``: size, speed, LFW accuracy, cosine and MTCNN agreement of
the artifacts that ``quantize build`` made (offline, needs the ``tools`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeface.cli.tools_extra import require_tools


def register_report(qsub: argparse._SubParsersAction) -> None:
    r = qsub.add_parser("report", help="size, speed, LFW accuracy, cosine and MTCNN agreement")
    r.add_argument("--artifacts", required=True, type=Path, help="directory made by build")
    r.add_argument("--out", required=True, type=Path, help="where JSON / Markdown / PNG go")
    r.add_argument("--data", type=Path, help="data folder with lfw/ and detection/")
    r.add_argument("--cache-dir", type=Path, help="cache for the aligned LFW crops")
    r.add_argument("--no-embedder", action="store_true")
    r.add_argument("--no-detector", action="store_true")
    r.add_argument("--detector-images", type=int, default=60, help="images per detection set")
    r.add_argument("--runs", type=int, default=50, help="timed batch-1 runs per variant")
    r.add_argument("--threads", type=int, default=2)
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    require_tools()
    from edgeface_tools.quantize.report import markdown, run_report

    from edgeface.evaluation.datasets import find_data_root

    result, written = run_report(
        args.artifacts,
        args.out,
        data_root=find_data_root(args.data),
        cache_dir=args.cache_dir,
        embedder=not args.no_embedder,
        detector=not args.no_detector,
        detector_images=args.detector_images,
        runs=args.runs,
        threads=args.threads,
    )
    print(markdown(result))
    for p in written:
        print(f"wrote {p}")
    return 0
