"""``edgeface gallery remove|list|export|import|rekey|check``: looking after a gallery.

``list`` never prints embeddings. Registered by :mod:`edgeface.cli.gallery_cmd` under the
same ``gallery`` command as init and enroll.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from edgeface.cli.gallery_options import (
    add_common,
    add_key_options,
    gallery_file,
    key_from_args,
    open_pipeline,
    print_json,
)
from edgeface.errors import ConfigError, EdgefaceError
from edgeface.gallery import GalleryError, GalleryFile, ModelRef, TamperedError
from edgeface.gallery.repair import restore_from_backup


def register_admin(gsub: argparse._SubParsersAction) -> None:
    """Add the looking-after actions to ``gallery``'s sub-parsers."""
    _register_remove_list(gsub)
    _register_transfer(gsub)
    _register_check(gsub)


def _register_remove_list(gsub: argparse._SubParsersAction) -> None:
    a = gsub.add_parser("remove", help="remove a person (the file is rewritten, backup too)")
    add_common(a)
    a.add_argument("who", help="display name or id")
    a.set_defaults(func=_remove)

    a = gsub.add_parser("list", help="names and template counts (never embeddings)")
    add_common(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_list)


def _register_transfer(gsub: argparse._SubParsersAction) -> None:
    a = gsub.add_parser("export", help="write an encrypted copy (optionally under another key)")
    add_common(a)
    a.add_argument("dest", type=Path)
    a.add_argument("--force", action="store_true", help="overwrite DEST")
    a.add_argument("--create-key", action="store_true", help="create --to-key-file if missing")
    add_key_options(a, "to-", "export")
    a.set_defaults(func=_export)

    a = gsub.add_parser("import", help="merge people from an exported gallery")
    add_common(a)
    a.add_argument("source", type=Path)
    a.add_argument(
        "--replace", action="store_true", help="same id: take the imported one even if older"
    )
    add_key_options(a, "from-", "imported file")
    a.set_defaults(func=_import)

    a = gsub.add_parser("rekey", help="re-encrypt under a new key or passphrase")
    add_common(a)
    a.add_argument("--create-key", action="store_true", help="create --new-key-file if missing")
    add_key_options(a, "new-", "new")
    a.set_defaults(func=_rekey)


def _register_check(gsub: argparse._SubParsersAction) -> None:
    a = gsub.add_parser("check", help="verify the gallery and its backup decrypt and are intact")
    add_common(a)
    a.add_argument(
        "--with-model",
        action="store_true",
        help="also check the gallery matches the current embedding model",
    )
    a.add_argument(
        "--restore",
        action="store_true",
        help="if the gallery is damaged but the .bak is good, put the .bak back",
    )
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_check)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _remove(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    with gf.edit(purge_backup=True) as g:
        info = g.remove(g.find(args.who).id)
    print(
        f"removed {info.name} (id {info.id}, {info.n_templates} template(s)); "
        f"{gf.path} and its backup rewritten"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    g = gf.load()
    people = g.identities()
    if args.json:
        print_json(
            {
                "gallery": str(gf.path),
                "model": None if g.model is None else {"id": g.model.id, "sha256": g.model.sha256},
                "identities": [i.to_dict() for i in people],
            }
        )
        return 0
    model = g.model.describe() if g.model else "none yet"
    print(f"{gf.path}: {len(people)} people, {g.n_templates} templates, model {model}")
    for i in people:
        print(
            f"  {i.name:<32} {i.n_templates} template(s)  quality {i.best_quality:.2f}  "
            f"updated {_when(i.updated)}  {i.id}"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    if args.dest.exists() and not args.force:
        raise GalleryError(f"{args.dest}: exists; use --force to overwrite")
    dest_key = key_from_args(args, "to_", new=True, fallback=False)
    g = gf.export_to(args.dest, dest_key)
    under = dest_key.description if dest_key else f"the same key ({gf.key.description})"
    print(f"exported {len(g)} people to {args.dest}, encrypted under {under}")
    return 0


def _import(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    src_key = key_from_args(args, "from_", fallback=False) or gf.key
    other = GalleryFile(args.source, src_key).load()
    with gf.edit() as g:
        stats = g.merge(other, replace=args.replace)
    print(
        f"imported from {args.source}: {stats['added']} added, {stats['updated']} updated, "
        f"{stats['skipped']} unchanged"
    )
    return 0


def _rekey(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    new_key = key_from_args(args, "new_", new=True, fallback=False)
    if new_key is None:
        raise ConfigError(
            "give the new key: --new-key-file (with --create-key), "
            "--new-passphrase-env, --new-ask-passphrase or --new-credential"
        )
    g = gf.rekey(new_key)
    print(
        f"re-encrypted {gf.path} ({len(g)} people) under {new_key.description}; "
        "the backup was rewritten too. Keep the new key; the old one no longer opens it."
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
    result: dict[str, Any] = {"gallery": str(gf.path)}
    try:
        g = gf.load()
    except TamperedError as exc:
        if not args.restore:
            raise
        backup, damaged = restore_from_backup(gf)
        print(
            f"{gf.path}: was damaged ({exc}); restored generation {backup.generation} "
            f"from {gf.backup_path}; the damaged file is kept as {damaged}"
        )
        g = gf.load()
    result.update(
        ok=True,
        people=len(g),
        templates=g.n_templates,
        generation=g.generation,
        model=None if g.model is None else g.model.describe(),
        key=gf.key.description,
    )
    backup_ok = _check_backup(gf, result)
    if args.with_model:
        g.check_model(ModelRef.of(open_pipeline(args).embedder))
        result["model_matches"] = True
    if args.json:
        print_json(result)
        return 0 if backup_ok is not False else 1
    print(
        f"{gf.path}: ok: {len(g)} people, {g.n_templates} templates, generation "
        f"{g.generation}, model {result['model']}, {gf.key.description}"
    )
    if backup_ok is True:
        print(f"{gf.backup_path}: ok: generation {result['backup_generation']}")
    elif backup_ok is False:
        print(f"{gf.backup_path}: FAILED: {result['backup_error']}")
    if args.with_model:
        print("model: matches the current embedder")
    return 0 if backup_ok is not False else 1


def _check_backup(gf: GalleryFile, result: dict[str, Any]) -> bool | str:
    """Whether the backup decrypts (``"none"`` when there is none), noted in ``result``."""
    backup_ok: bool | str = "none"
    if gf.backup_path.exists():
        try:
            b = gf.load_backup()
            backup_ok = True
            result["backup_generation"] = b.generation
        except EdgefaceError as exc:
            backup_ok = False
            result["backup_error"] = str(exc)
    result["backup_ok"] = backup_ok
    return backup_ok
