"""``edgeface bundle keygen | build | verify | inspect | install | rollback | list | status``.

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
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError

#: the device defaults (edgeface.bundle.device / keys hold the same values; not imported here
#: so that ``edgeface --help`` loads nothing of the bundle code)
DEFAULT_ROOT = "/var/lib/edgeface"
DEFAULT_TRUSTED_KEYS = "/etc/edgeface/trusted-keys"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


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


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("EDGEFACE_DEVICE_ROOT", DEFAULT_ROOT)),
        help="device root with releases/ and current ($EDGEFACE_DEVICE_ROOT or %(default)s)",
    )
    p.add_argument(
        "--trusted-keys",
        type=Path,
        default=Path(os.environ.get("EDGEFACE_TRUSTED_KEYS", DEFAULT_TRUSTED_KEYS)),
        help="directory of trusted public keys (default $EDGEFACE_TRUSTED_KEYS or %(default)s)",
    )
    p.add_argument(
        "--restart-command",
        help="run after a switch; '' for none (default $EDGEFACE_RESTART_COMMAND or "
        "'systemctl try-restart edgeface-door.service')",
    )
    p.add_argument(
        "--health-command",
        help="must exit 0 after the switch or the device rolls back; '' for none (default "
        "$EDGEFACE_HEALTH_COMMAND or 'edgeface door --check --no-camera --config "
        "/etc/edgeface/door.toml')",
    )
    p.add_argument("--json", action="store_true")


def _device(args: argparse.Namespace) -> Any:
    from edgeface.bundle.device import DEFAULT_HEALTH, DEFAULT_RESTART, Device, DeviceConfig

    def command(value: str | None, env: str, default: list[str]) -> list[str]:
        if value is None:
            value = os.environ.get(env)
        return list(default) if value is None else shlex.split(value)

    cfg = DeviceConfig(
        root=args.root,
        trusted_keys=args.trusted_keys,
        restart_command=command(args.restart_command, "EDGEFACE_RESTART_COMMAND", DEFAULT_RESTART),
        health_command=command(args.health_command, "EDGEFACE_HEALTH_COMMAND", DEFAULT_HEALTH),
        backend=getattr(args, "backend", None),
    )
    quiet = args.json
    return Device(cfg, log=None if quiet else lambda m: print(m, file=sys.stderr))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help="signed model bundles: build, verify, install on a device")
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    bsub.required = True

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
    a.add_argument("--embedder-model", default="mobilefacenet-dyn", help="its manifest entry")
    a.add_argument("--backend", default="onnxruntime", help="embedder backend on the device")
    a.add_argument("--detector-backend", default="numpy", choices=("numpy", "onnxruntime"))
    a.add_argument("--report", type=Path, help="accuracy report (quantize report JSON)")
    a.add_argument("--expires", help="YYYY-MM-DD[THH:MM] UTC or +Nd")
    a.add_argument("--arch", help="target CPU (default: this machine's, 'any' for all)")
    a.add_argument("--float-source-sha256", help="default: from artifacts.json beside the file")
    a.set_defaults(func=_build)

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

    a = bsub.add_parser("install", help="install a bundle on this device (self-test, rollback)")
    a.add_argument("bundle", type=Path)
    _device_options(a)
    a.add_argument("--allow-downgrade", action="store_true", help="accept an older version")
    a.add_argument("--backend", help="self-test backend (default: the bundle's target)")
    a.add_argument(
        "--import-gallery",
        type=Path,
        help="first install: copy (or re-embed) this gallery into the release",
    )
    from edgeface.cli.gallery_cmd import _add_key_options

    _add_key_options(a)
    a.set_defaults(func=_install)

    for name, fn, text in (
        ("rollback", "_rollback", "switch back to the previous release"),
        ("list", "_list", "releases on this device and whether they are complete"),
        ("status", "_status", "current and previous release, anti-rollback counter"),
    ):
        a = bsub.add_parser(name, help=text)
        _device_options(a)
        a.set_defaults(func=globals()[fn])


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


def _install(args: argparse.Namespace) -> int:
    from edgeface.cli.gallery_options import key_from_args

    device = _device(args)
    r = device.install(
        args.bundle,
        allow_downgrade=args.allow_downgrade,
        gallery_key=lambda: key_from_args(args),
        import_gallery=args.import_gallery,
    )
    if args.json:
        _print_json(r)
    else:
        secs = r["seconds"]
        total = sum(secs.values())
        print(
            f"installed {r['name']} version {r['version']} (previous {r['previous']}); "
            f"gallery: {r['gallery']}; {total:.2f} s "
            f"({', '.join(f'{k[:-2]} {v:.2f}' for k, v in secs.items())})"
        )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    r = _device(args).rollback()
    if args.json:
        _print_json(r)
    else:
        print(f"rolled back: current {r['current']}, previous {r['previous']}; {r['health']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = _device(args).list()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no releases")
    for r in rows:
        print(
            f"{r['version']:>6}  {r['role']:<8}  {r.get('name', '?'):<20}  "
            f"{r.get('created', ''):<20}  {r['state']}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    s = _device(args).status()
    if args.json:
        _print_json(s)
    else:
        print(
            f"current {s['current']}  previous {s['previous']}  "
            f"highest installed {s['highest_version']}  last {s['last']}"
        )
    return 0
