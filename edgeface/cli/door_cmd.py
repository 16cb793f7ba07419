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
    p.add_argument(
        "--lock",
        action="store_true",
        help="only drive the relay to locked and exit (systemd ExecStopPost=)",
    )
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
    key = v.add_mutually_exclusive_group()
    key.add_argument("--key-file", metavar="FILE", help="the audit HMAC key file")
    key.add_argument(
        "--key-credential", metavar="NAME", help="the audit key as a systemd credential"
    )
    v.add_argument("--head", metavar="FILE", help="the head file (default: LOG.head)")
    v.set_defaults(func=_verify)
    k = asub.add_parser("create-key", help="write a new random audit HMAC key (mode 0600)")
    k.add_argument("file", help="where to write it; never overwritten")
    k.set_defaults(func=_create_key)


def _door(args: argparse.Namespace) -> int:
    from edgeface.door.config import load_config

    cfg = load_config(args.config)
    if args.lock:
        from edgeface.door.service import lock_relay

        return lock_relay(cfg)
    if args.check:
        from edgeface.door.health import report, run_checks

        return report(run_checks(cfg, camera=not args.no_camera))
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


def _create_key(args: argparse.Namespace) -> int:
    from edgeface.gallery.keys import create_key_file

    create_key_file(args.file)
    print(f"audit key written to {args.file} (mode 0600); set [audit] key_file, or load it as "
          "the systemd credential edgeface-audit.key")  # fmt: skip
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgeface.door.audit import (
        chain_files,
        default_head_path,
        load_audit_key,
        read_head,
        verify_files,
        verify_log,
    )

    key = load_audit_key(key_file=args.key_file, credential=args.key_credential)
    one_log = len(args.files) == 1 and not Path(args.files[0]).name[-1:].isdigit()
    files: list[Path] = []
    for f in args.files:
        p = Path(f)
        files.extend(chain_files(p) if one_log else [p])
    head_file = Path(args.head) if args.head else default_head_path(args.files[-1])
    missing = [str(p) for p in files if not p.is_file()]
    if (missing or not files) and not head_file.is_file():
        print(
            f"edgeface: error: {missing[0] if missing else args.files[0]}: no such file",
            file=sys.stderr,
        )
        return 2
    if one_log:
        # a log deleted or emptied next to its head file is tampering, not "no such file"
        rep = verify_log(args.files[0], key=key, head_path=args.head)
    else:
        rep = verify_files([p for p in files if p.is_file()], key=key, head=read_head(head_file))
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
