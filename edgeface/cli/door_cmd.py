"""``edgeface door --config FILE [--check]`` and ``edgeface audit verify FILE...``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("door", help="run the door-access daemon (or --check its setup)")
    p.add_argument("--config", required=True, help="door.toml (e.g. /etc/edgeface/door.toml)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate config, models, gallery key, camera; exit non-zero on failure",
    )
    p.add_argument("--no-camera", action="store_true", help="with --check: skip opening the camera")
    p.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_door)

    a = sub.add_parser("audit", help="verify the door's hash-chained audit log")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True
    v = asub.add_parser("verify", help="check that no record was edited, removed or reordered")
    v.add_argument(
        "files",
        nargs="+",
        help="the log (its rotated predecessors FILE.N are included), or files oldest first",
    )
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)


def _door(args: argparse.Namespace) -> int:
    from edgeface.door.config import load_config

    cfg = load_config(args.config)
    if args.check:
        from edgeface.door.health import run_checks

        results = run_checks(cfg, camera=not args.no_camera)
        for r in results:
            print(r.line())
        failed = [r for r in results if not r.ok]
        print(f"{len(results) - len(failed)} ok, {len(failed)} failed")
        return 1 if failed else 0
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from edgeface.door.service import attach_fleet, build_daemon

    daemon = build_daemon(cfg)
    daemon.install_signal_handlers()
    interrupted: list[int] = []

    def on_ctrl_c(signum: int, frame: object) -> None:
        # the daemon's own handler locks the relay and stops the loop; a Ctrl-C then exits
        # 130 like every other command (SIGTERM from systemd stays a clean 0)
        interrupted.append(signum)
        daemon.request_stop(signum, frame)

    signal.signal(signal.SIGINT, on_ctrl_c)
    agent = attach_fleet(daemon, cfg)  # None without [mqtt]
    try:
        code = daemon.run(max_frames=args.max_frames)
    finally:
        if agent is not None:
            agent.close()
    if interrupted and code == 0:
        print("edgeface: interrupted", file=sys.stderr)
        return 130
    return code


def _verify(args: argparse.Namespace) -> int:
    from edgeface.door.audit import chain_files, verify_files

    files: list[Path] = []
    for f in args.files:
        p = Path(f)
        if len(args.files) == 1 and not p.name[-1:].isdigit():
            files.extend(chain_files(p))
        else:
            files.append(p)
    missing = [str(p) for p in files if not p.is_file()]
    if missing or not files:
        print(
            f"edgeface: error: {missing[0] if missing else args.files[0]}: no such file",
            file=sys.stderr,
        )
        return 2
    rep = verify_files(files)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": rep.ok,
                    "files": [str(p) for p in rep.files],
                    "records": rep.records,
                    "first_seq": rep.first_seq,
                    "last_seq": rep.last_seq,
                    "head": rep.head,
                    "errors": rep.errors,
                    "warnings": rep.warnings,
                },
                indent=2,
            )
        )
    else:
        for w in rep.warnings:
            print(f"warning: {w}")
        for e in rep.errors:
            print(f"TAMPERED: {e}")
        if rep.ok:
            print(
                f"ok: {rep.records} records in {len(files)} file(s), "
                f"seq {rep.first_seq}..{rep.last_seq}, head {rep.head}"
            )
    return 0 if rep.ok else 1
