"""``edgeface bundle keygen | build | verify | inspect | install | rollback | list | status``.

This module holds the operator's actions; the device's are :mod:`edgeface.cli.bundle_device_cmd`.

The operator's side (keygen, build) runs on the workstation; the device's side (install,
rollback, list, status) on the door unit or kiosk, usually through ``edgeface deploy push``.
Device options default from the environment so a remote command stays short:
``$EDGEFACE_DEVICE_ROOT`` (``/var/lib/edgeface``), ``$EDGEFACE_TRUSTED_KEYS``
(``/etc/edgeface/trusted-keys``), ``$EDGEFACE_RESTART_COMMAND`` and
``$EDGEFACE_HEALTH_COMMAND``. Flow and layout: docs/deploy.md.
"""

from __future__ import annotations

import argparse
import calendar
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgeface.cli.bundle_device_cmd import DEFAULT_TRUSTED_KEYS, _print_json, register_device
from edgeface.embedder.model import DEFAULT_EMBEDDER
from edgeface.errors import ConfigError


def _parse_time(value: str) -> float:
    """``2027-06-30`` or ``2027-06-30T12:00`` (UTC), or ``+90d`` from now."""
    if value.startswith("+") and value.endswith("d"):
        return time.time() + 86400 * float(value[1:-1])
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return float(calendar.timegm(time.strptime(value, fmt)))
        except ValueError:
            continue
    raise ConfigError(f"--expires: use YYYY-MM-DD[THH:MM] (UTC) or +Nd, got {value!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="signed model bundles: build, verify, install on a device")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    bsub.required = True
    _register_build(bsub)
    _register_check(bsub)
    register_device(bsub)


def _register_build(bsub: argparse._SubParsersAction) -> None:
    a = bsub.add_parser("keygen", help="make an Ed25519 signing key pair")
    a.add_argument("--private", required=True, type=Path, help="private key file (mode 0600)")
    a.add_argument("--public", required=True, type=Path, help="public key for trusted-keys/")
    a.set_defaults(func=_keygen)

    a = bsub.add_parser("build", help="collect models, calibration, report, test vectors; sign")
    a.add_argument("--out", required=True, type=Path, help="bundle file to write")
    a.add_argument("--key", required=True, type=Path, help="private signing key")
    a.add_argument("--name", required=True, help="bundle name, e.g. door-int8")
    a.add_argument("--version", required=True, type=int, help="release number; only increases")
    a.add_argument("--embedder", required=True, type=Path, help="embedder model file")
    a.add_argument(
        "--calibration",
        type=Path,
        help="the embedder's own calibration (default: EMBEDDER.calibration.json)",
    )
    a.add_argument(
        "--embedder-model",
        default=DEFAULT_EMBEDDER,
        help=f"its manifest entry (default {DEFAULT_EMBEDDER})",
    )
    a.add_argument("--backend", default="onnxruntime", help="embedder backend on the device")
    a.add_argument("--detector-backend", default="numpy", choices=("numpy", "onnxruntime"))
    a.add_argument("--report", type=Path, help="accuracy report (quantize report JSON)")
    a.add_argument("--expires", help="YYYY-MM-DD[THH:MM] UTC or +Nd")
    a.add_argument("--arch", help="target CPU (default: this machine's, 'any' for all)")
    a.add_argument("--float-source-sha256", help="default: from artifacts.json beside the file")
    a.set_defaults(func=_build)


def _register_check(bsub: argparse._SubParsersAction) -> None:
    a = bsub.add_parser("verify", help="check a bundle's signature and every byte")
    a.add_argument("bundle", type=Path)
    a.add_argument("--trusted-keys", type=Path, help="directory of trusted public keys")
    a.add_argument("--public-key", type=Path, help="one public key file instead")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_verify)

    a = bsub.add_parser("inspect", help="print a bundle's manifest (signature not checked)")
    a.add_argument("bundle", type=Path)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_inspect)


def _keygen(args: argparse.Namespace) -> int:
    from edgeface.bundle.keys import generate

    kid = generate(args.private, args.public)
    print(f"key {kid}: private {args.private} (keep it off the devices), public {args.public}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from edgeface.bundle.build import BuildSpec, build
    from edgeface.bundle.manifest import parse

    cal = args.calibration or args.embedder.with_name(args.embedder.name + ".calibration.json")
    extra: dict[str, Any] = {}
    if args.arch:
        extra["arch"] = args.arch
    spec = BuildSpec(
        name=args.name,
        version=args.version,
        embedder=args.embedder,
        calibration=cal,
        embedder_model=args.embedder_model,
        backend=args.backend,
        detector_backend=args.detector_backend,
        report=args.report,
        expires=_parse_time(args.expires) if args.expires else None,
        float_source_sha256=args.float_source_sha256,
        **extra,
    )
    if args.report is None:
        print("note: no accuracy report in the bundle (give --report)", file=sys.stderr)
    m = build(spec, args.key, args.out)
    size = args.out.stat().st_size
    print(
        f"{args.out}: {m['name']} version {m['version']}, {len(m['files'])} files, "
        f"{size / 1e6:.1f} MB, signed by key {m['key_id']}"
    )
    parse(m, str(args.out))
    return 0


def _trusted(args: argparse.Namespace) -> dict[str, Any]:
    from edgeface.bundle.keys import key_id, load_public, trusted_keys

    if args.public_key:
        k = load_public(args.public_key)
        return {key_id(k): k}
    env = os.environ.get("EDGEFACE_TRUSTED_KEYS")
    return trusted_keys(args.trusted_keys or (Path(env) if env else DEFAULT_TRUSTED_KEYS))


def _verify(args: argparse.Namespace) -> int:
    from edgeface.bundle import envelope
    from edgeface.bundle.manifest import parse

    env = envelope.verify(args.bundle, _trusted(args))
    m = parse(env.manifest, str(args.bundle))
    if args.json:
        _print_json({"ok": True, **m.summary()})
    else:
        print(
            f"{args.bundle}: ok: {m.name} version {m.version}, signed by key {env.key_id}, "
            f"{len(m.files)} files intact"
        )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from edgeface.bundle import envelope
    from edgeface.bundle.manifest import parse

    env = envelope.read(args.bundle)
    m = parse(env.manifest, str(args.bundle))
    s = {"signature_checked": False, **m.summary()}
    if args.json:
        _print_json(s)
        return 0
    print(f"{m.name} version {m.version}  (signature NOT checked: use bundle verify)")
    print(f"created {s['created']}  expires {s['expires'] or 'never'}  key {s['key_id']}")
    print(f"target {m.arch} / {m.backend}  min edgeface {m.min_edgeface}")
    print(
        f"embedder {s['embedder']['file']} ({s['embedder']['sha256'][:12]}, {m.embedder['model']})"
    )
    print(f"float source sha256 {str(s['float_source_sha256'])[:12]}")
    print(f"detector {m.detector['backend']}")
    for f in m.files.values():
        print(f"  {f.size:>10}  {f.sha256[:12]}  {f.path}")
    return 0
