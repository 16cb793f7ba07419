"""``edgeface bench``: time every embedder variant of an artifacts directory on this device.

Runs on the device itself (no ``tools`` extra, only the runtimes); the timing is
:func:`edgeface_tools.quantize.bench.bench_embedders`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeface.cli.tools_extra import quiet_onnxruntime
from edgeface.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    bn = sub.add_parser("bench", help="time every embedder variant of an artifacts dir here")
    bn.add_argument("--artifacts", required=True, type=Path, help="directory made by build")
    bn.add_argument("--report", type=Path, help="quantization_report.json: the accuracy budget")
    bn.add_argument("--runs", type=int, default=100)
    bn.add_argument("--threads", type=int, default=2)
    bn.add_argument("--json", action="store_true", help="print the timings and the pick as JSON")
    bn.add_argument("--out", type=Path, metavar="JSON", help="also write that JSON here")
    bn.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    quiet_onnxruntime()
    budget = None
    if args.report:
        try:
            rep = json.loads(args.report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.report}: unreadable report ({exc})") from exc
        budget = {r["file"]: bool(r.get("meets_goals")) for r in rep.get("embedder", [])}
    from edgeface_tools.quantize.bench import bench_embedders

    result = bench_embedders(args.artifacts, runs=args.runs, threads=args.threads, budget=budget)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'variant':<36} {'backend':<12} {'ms/face':>8}  budget")
    for r in result["variants"]:  # type: ignore[union-attr]
        if "error" in r:
            print(f"{r['variant']:<36} {r['backend']:<12} {'-':>8}  {r['error']}")
        else:
            ok = "ok" if r["within_budget"] else "over"
            print(f"{r['variant']:<36} {r['backend']:<12} {r['ms_per_face_b1']:>8.2f}  {ok}")
    pick = result["fastest_within_budget"]
    if pick:
        print(f"fastest within the accuracy budget: {pick['variant']} ({pick['backend']})")  # type: ignore[index]
    return 0
