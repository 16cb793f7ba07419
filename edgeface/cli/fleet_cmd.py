"""``edgeface fleet keys | enroll | remove | push | relock | lockdown | unlock | collect``.

The operator's commands for many doors over MQTT (docs/fleet.md). paho-mqtt and cryptography
are imported inside the functions, so ``edgeface --help`` works on a base install.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="many doors over MQTT: central enrollment, commands, audit")
    fsub = p.add_subparsers(dest="fleet_command", metavar="ACTION")
    fsub.required = True

    k = fsub.add_parser("keys", help="create the operator signing key, its public key, fleet key")
    k.add_argument("--dir", required=True, help="directory for operator.key/.pub and fleet.key")
    k.set_defaults(func=_keys)

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        q = fsub.add_parser(name, help=help_)
        q.add_argument("--config", required=True, help="fleet.toml ([mqtt] and [operator])")
        return q

    e = with_config("enroll", "publish people of the operator gallery to every door")
    e.add_argument("people", nargs="+", help="display names or identity ids")
    e.set_defaults(func=_enroll)
    r = with_config("remove", "remove people from every door and the operator gallery")
    r.add_argument("people", nargs="+", help="display names or identity ids")
    r.set_defaults(func=_remove)
    s = with_config("push", "publish a snapshot of the whole operator gallery (compacts the log)")
    s.set_defaults(func=_push)

    for name, help_ in (
        ("relock", "lock the door(s) now"),
        ("lockdown", "lockdown on: no unlocking at all; off: back to normal"),
        ("unlock", "remote unlock of one door (only where mqtt.remote_unlock = true)"),
    ):
        c = with_config(name, help_)
        if name == "lockdown":
            c.add_argument("value", choices=["on", "off"])
        if name == "unlock":
            c.add_argument("--device", required=True, help="the door's device id")
            c.add_argument("--seconds", type=float, default=3.0, help="how long (capped by door)")
            c.add_argument("--ttl", type=float, default=20.0, help="valid for (s, at most 60)")
        else:
            c.add_argument("--device", default="all", help="a door's device id (default: all)")
            c.add_argument("--ttl", type=float, default=120.0, help="valid for (s, at most 600)")
        c.set_defaults(func=_command, command=name)

    col = with_config("collect", "store every door's audit records and check their chains")
    col.add_argument("--out", required=True, help="directory: <out>/<device>/audit.jsonl")
    col.add_argument("--seconds", type=float, default=None, help="stop after this long")
    col.add_argument(
        "--idle", type=float, default=5.0, help="stop after this long without a record"
    )
    col.add_argument("--json", action="store_true")
    col.set_defaults(func=_collect)


def _keys(args: argparse.Namespace) -> int:
    from edgeface.fleet.operator import create_operator_keys

    for what, path in create_operator_keys(args.dir).items():
        print(f"{what}: {path}")
    print("give operator.pub and fleet.key to every device; keep operator.key on this machine")
    return 0


def _operator(args: argparse.Namespace) -> Any:
    from edgeface.fleet.operator import Operator, load_operator_config

    return Operator(load_operator_config(args.config))


def _enroll(args: argparse.Namespace) -> int:
    with _operator(args) as op:
        seq, ids = op.enroll(args.people)
    print(f"published change {seq}: upsert {len(ids)} identit{'y' if len(ids) == 1 else 'ies'}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    with _operator(args) as op:
        seq, ids = op.remove(args.people)
    print(f"published change {seq}: remove {', '.join(ids)}")
    return 0


def _push(args: argparse.Namespace) -> int:
    with _operator(args) as op:
        seq, n = op.push()
    print(f"published snapshot {seq}: {n} identities; older log entries cleared")
    return 0


def _command(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {"target": args.device, "ttl_s": args.ttl}
    if args.command == "lockdown":
        kw["value"] = args.value
    if args.command == "unlock":
        kw["duration_s"] = args.seconds
    with _operator(args) as op:
        seq = op.command(args.command, **kw)
    print(f"published command {seq}: {args.command} {kw.get('value', '')} -> {args.device}")
    return 0


def _wait(seconds: float | None, idle: float, last: list[float]) -> None:
    """For ``seconds``, or until ``idle`` seconds passed without a record."""
    start = time.monotonic()
    last[0] = start
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        if seconds is not None and now - start >= seconds:
            return
        if seconds is None and now - last[0] >= idle:
            return


def _collect(args: argparse.Namespace) -> int:
    from edgeface.fleet.collect import AuditCollector
    from edgeface.fleet.errors import FleetError
    from edgeface.fleet.link import make_client
    from edgeface.fleet.operator import Operator, load_operator_config

    cfg = load_operator_config(args.config)
    collector = AuditCollector(args.out)
    mutex = threading.Lock()
    last = [time.monotonic()]
    connected = threading.Event()
    # a persistent session of its own: records published while the collector is away are
    # queued by the broker (QoS 1) and delivered at the next run
    from dataclasses import replace

    client = make_client(
        replace(cfg.mqtt, username=cfg.mqtt.user, device_id=f"{cfg.mqtt.device_id}-collect"),
        clean_session=False,
    )

    def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not getattr(reason, "is_failure", False):
            c.subscribe([("edgeface/+/audit", 1), ("edgeface/+/state", 1)])
            connected.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 3:
            return
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        with mutex:
            if parts[2] == "audit" and isinstance(data, dict):
                collector.offer(parts[1], data)
                last[0] = time.monotonic()
            elif parts[2] == "state" and isinstance(data, dict):
                collector.observe_state(parts[1], data)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(cfg.connect_timeout_s):
            raise FleetError(f"mqtt: broker {cfg.mqtt.host}:{cfg.mqtt.port} unreachable")
        _wait(args.seconds, args.idle, last)
        for _round in range(2):  # ask doors to resend what never arrived, then wait again
            with mutex:
                missing = collector.missing()
            if not missing:
                break
            with Operator(cfg) as op:
                for device, first in sorted(missing.items()):
                    op.command("audit_resend", target=device, value=str(first), ttl_s=120)
            _wait(None, args.idle, last)
    finally:
        client.disconnect()
        client.loop_stop()
    with mutex:
        report = collector.report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for device, r in report.items():
            state = "ok" if r["ok"] else "PROBLEM"
            print(f"{device}: {state}, {r['records']} records, last seq {r['last_seq']}")
            for problem in r["problems"]:
                print(f"  {problem}")
    if not report:
        print("no audit records received", file=sys.stderr)
    return 0 if all(r["ok"] for r in report.values()) else 1
