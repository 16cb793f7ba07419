"""``edgeface deploy push BUNDLE HOST...``: install a signed bundle on many devices over ssh."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="push a signed bundle to devices over OpenSSH")
    dsub = p.add_subparsers(dest="deploy_command", metavar="ACTION")
    dsub.required = True
    a = dsub.add_parser("push", help="copy BUNDLE to each HOST and run bundle install there")
    a.add_argument("bundle", type=Path)
    a.add_argument("hosts", nargs="+", metavar="HOST", help="[user@]host[:port]")
    a.add_argument("-i", "--identity", type=Path, help="ssh private key (default: ssh's own)")
    a.add_argument(
        "--known-hosts", type=Path, help="known_hosts file (default: ~/.ssh/known_hosts)"
    )
    a.add_argument(
        "--remote-edgeface",
        default="edgeface",
        help="command that runs edgeface on the devices (default: edgeface)",
    )
    a.add_argument(
        "--remote-args",
        default="",
        help="extra arguments for bundle install there, one string (e.g. '--root /srv/ef')",
    )
    a.add_argument("--remote-dir", default="/tmp", help="where the copy waits (default /tmp)")
    a.add_argument("--parallel", type=int, default=8, help="hosts at a time (8)")
    a.add_argument("--timeout", type=float, default=600.0, help="seconds per host step (600)")
    a.add_argument("-o", dest="ssh_options", action="append", default=[], help="ssh -o option")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_push)


def _push(args: argparse.Namespace) -> int:
    from edgeface.bundle.errors import BundleError, DeployError
    from edgeface.deploy.push import PushOptions, Target, push, table

    if not args.bundle.is_file():
        raise BundleError(f"{args.bundle}: no such bundle file")
    opts = PushOptions(
        identity=args.identity,
        known_hosts=args.known_hosts,
        remote_edgeface=args.remote_edgeface,
        remote_args=shlex.split(args.remote_args),
        remote_dir=args.remote_dir,
        parallel=args.parallel,
        timeout_s=args.timeout,
        ssh_options=args.ssh_options,
    )
    results = push(args.bundle, [Target.parse(h) for h in args.hosts], opts)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(table(results))
    failed = sum(not r.ok for r in results)
    return DeployError.exit_code if failed else 0
