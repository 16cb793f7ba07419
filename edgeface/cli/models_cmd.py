"""``edgeface models list | fetch | verify``."""

from __future__ import annotations

import argparse
import json

from edgeface.errors import ModelError
from edgeface.modelstore.fetch import fetch_model
from edgeface.modelstore.manifest import load_manifest
from edgeface.modelstore.resolver import ModelResolver


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, fetch and verify model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    ls = msub.add_parser("list", help="manifest entries and where each file was found")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    fe = msub.add_parser("fetch", help="download / build model files into the cache")
    fe.add_argument("names", nargs="*", help="manifest names (default: all)")
    fe.set_defaults(func=_fetch)
    ve = msub.add_parser("verify", help="check the sha256 of every model file found")
    ve.add_argument("names", nargs="*")
    ve.set_defaults(func=_verify)


def _list(args: argparse.Namespace) -> int:
    resolver = ModelResolver.default()
    rows = []
    for name, entry in sorted(load_manifest().items()):
        found = resolver.find(name)
        rows.append(
            {
                "name": name,
                "file": entry.file,
                "license": entry.license,
                "source": entry.source_kind,
                "found": str(found) if found else None,
                "description": entry.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        where = r["found"] or "missing (edgeface models fetch " + str(r["name"]) + ")"
        print(f"{r['name']:<20} {r['license']:<11} {r['source']:<8} {where}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    for name in args.names or sorted(load_manifest()):
        fetch_model(name)
    return 0


def _verify(args: argparse.Namespace) -> int:
    resolver = ModelResolver.default()
    failures = 0
    for name in args.names or sorted(load_manifest()):
        try:
            path = resolver.resolve(name)
            print(f"{name:<20} ok       {path}")
        except ModelError as exc:
            failures += 1
            print(f"{name:<20} FAILED   {exc}")
    if failures:
        raise ModelError(f"{failures} model file(s) missing or corrupt")
    return 0
