"""``edgeface gallery init|enroll|remove|list|export|import|rekey|check`` and
``edgeface identify IMAGE``.

Key options are the same on every command: ``--key-file``, ``--passphrase-env VAR``,
``--passphrase-file``, ``--ask-passphrase`` or ``--credential NAME`` (systemd). Without one,
``$EDGEFACE_GALLERY_KEY_FILE`` is used, then the systemd credential ``edgeface-gallery.key``
if ``$CREDENTIALS_DIRECTORY`` has it. The gallery path is ``--gallery``, else
``$EDGEFACE_GALLERY``, else ``~/.local/share/edgeface/gallery.efg``.

``list`` never prints embeddings. Face images are stored only in a gallery created or set
with ``--keep-crops`` (the aligned 112x112 crop of each template, encrypted with the rest), so
that ``gallery migrate`` can re-embed everyone for a new embedder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeface.cli.options import add_progress_option, progress
from edgeface.errors import ConfigError, EdgefaceError, NoFaceError
from edgeface.gallery import GalleryError, GalleryFile, KeySource, ModelRef, TamperedError
from edgeface.gallery.durable import WriterLock
from edgeface.gallery.keysource import KeyChoice, default_gallery_path, resolve_key
from edgeface.gallery.repair import restore_from_backup

DEFAULT_FAR = 1e-3


def _default_pipeline() -> Any:
    from edgeface.recognition import FacePipeline

    return FacePipeline.default()


#: how the CLI gets its face pipeline; tests replace it to reuse one loaded pipeline
pipeline_factory: Callable[[], Any] = _default_pipeline


# --------------------------------------------------------------------------- options
def _add_key_options(p: argparse.ArgumentParser, prefix: str = "", what: str = "") -> None:
    dest = prefix.replace("-", "_")
    g = p.add_argument_group(f"{what or 'gallery'} key (one of)")
    g.add_argument(
        f"--{prefix}key-file",
        dest=f"{dest}key_file",
        metavar="PATH",
        help="file with a 256-bit key (mode 0600)",
    )
    g.add_argument(
        f"--{prefix}passphrase-env",
        dest=f"{dest}passphrase_env",
        metavar="VAR",
        help="read the passphrase from this environment variable",
    )
    g.add_argument(
        f"--{prefix}passphrase-file",
        dest=f"{dest}passphrase_file",
        metavar="PATH",
        help="read the passphrase from the first line of a file (mode 0600)",
    )
    g.add_argument(
        f"--{prefix}ask-passphrase",
        dest=f"{dest}ask_passphrase",
        action="store_true",
        help="prompt for the passphrase",
    )
    g.add_argument(
        f"--{prefix}credential",
        dest=f"{dest}credential",
        metavar="NAME",
        help="systemd credential name (from $CREDENTIALS_DIRECTORY)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gallery",
        type=Path,
        default=None,
        metavar="PATH",
        help="gallery file (default: $EDGEFACE_GALLERY or ~/.local/share/edgeface/gallery.efg)",
    )
    _add_key_options(p)


def key_from_args(
    args: argparse.Namespace, prefix: str = "", *, new: bool = False, fallback: bool = True
) -> KeySource | None:
    """The key source chosen by the options with ``prefix`` (``""``, ``to_``, ``new_``...);
    the rules are :func:`edgeface.gallery.keysource.resolve_key`'s."""
    choice = KeyChoice(
        **{f: getattr(args, f"{prefix}{f}", None) or None for f in KeyChoice.__dataclass_fields__}
    )

    def created(path: Path) -> None:
        print(f"created key file {path} (mode 0600); keep a copy off the device", file=sys.stderr)

    return resolve_key(
        choice,
        new=new,
        create_key=getattr(args, "create_key", False),
        fallback=fallback and not prefix,
        flag_prefix=prefix.replace("_", "-"),
        on_created=created,
    )


def _gallery_file(args: argparse.Namespace, *, new: bool = False) -> GalleryFile:
    path = args.gallery or default_gallery_path()
    key = key_from_args(args, new=new)
    assert key is not None
    return GalleryFile(path, key)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# --------------------------------------------------------------------------- register
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="the encrypted gallery of enrolled people")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    gsub.required = True

    a = gsub.add_parser("init", help="create an empty encrypted gallery")
    _common(a)
    a.add_argument(
        "--create-key",
        action="store_true",
        help="create the --key-file (random 256-bit key, mode 0600) if missing",
    )
    a.add_argument(
        "--max-templates",
        type=int,
        default=5,
        metavar="N",
        help="templates kept per person (default 5)",
    )
    a.add_argument(
        "--keep-crops",
        action="store_true",
        help="also keep each template's aligned face crop (encrypted), so a new embedder can "
        "re-embed everyone (gallery migrate); see docs/deploy.md for the privacy trade-off",
    )
    a.set_defaults(func=_init)

    a = gsub.add_parser("settings", help="turn crop keeping on or off for an existing gallery")
    _common(a)
    a.add_argument("--keep-crops", choices=("on", "off"), required=True)
    a.set_defaults(func=_settings)

    a = gsub.add_parser(
        "migrate", help="re-embed every template with another embedder (needs kept crops)"
    )
    _common(a)
    a.add_argument("--embedder", required=True, type=Path, help="the new embedder model file")
    a.add_argument(
        "--model",
        default="mobilefacenet-dyn",
        help="manifest entry whose preprocessing the file uses (mobilefacenet-dyn)",
    )
    a.add_argument("--backend", default="onnxruntime")
    a.add_argument("--no-flip", action="store_true", help="the runtime embeds without flip")
    a.set_defaults(func=_migrate)

    a = gsub.add_parser("enroll", help="enroll a person from photos, a folder tree or a camera")
    _common(a)
    a.add_argument("name", nargs="?", help="display name (not with --dir)")
    a.add_argument("images", nargs="*", type=Path, help="photos of that person")
    src = a.add_mutually_exclusive_group()
    src.add_argument(
        "--dir",
        type=Path,
        metavar="ROOT",
        help="enroll everyone in ROOT/<Name>/*.jpg (underscores become spaces)",
    )
    src.add_argument(
        "--camera",
        metavar="SOURCE",
        help="camera index, /dev/videoN, picamera2, a video file or image folder",
    )
    a.add_argument("--frames", type=int, default=100, help="camera frames to look at (100)")
    add_progress_option(a)
    mode = a.add_mutually_exclusive_group()
    mode.add_argument(
        "--add",
        action="store_true",
        help="add templates to the already enrolled person of that name",
    )
    mode.add_argument(
        "--new", action="store_true", help="enroll as a new identity even if the name is taken"
    )
    a.add_argument(
        "--take-largest",
        action="store_true",
        help="use the largest face in photos with several faces",
    )
    a.add_argument("--min-face-size", type=float, help="minimum face size in px (60)")
    a.add_argument("--min-sharpness", type=float, help="minimum Laplacian variance (40)")
    a.add_argument("--max-yaw", type=float, help="maximum yaw asymmetry 0..1 (0.6)")
    a.add_argument(
        "--far",
        type=float,
        default=DEFAULT_FAR,
        help="FAR whose threshold flags look-alikes already enrolled (1e-3)",
    )
    a.add_argument("--dry-run", action="store_true", help="assess the images, change nothing")
    a.add_argument("--strict", action="store_true", help="refuse a look-alike of someone enrolled")
    a.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="enroll even if the person matches someone enrolled at the --far threshold",
    )
    a.add_argument("--json", action="store_true")
    from edgeface.cli.liveness_opts import add_liveness_option

    add_liveness_option(a)
    a.set_defaults(func=_enroll)

    a = gsub.add_parser("remove", help="remove a person (the file is rewritten, backup too)")
    _common(a)
    a.add_argument("who", help="display name or id")
    a.set_defaults(func=_remove)

    a = gsub.add_parser("list", help="names and template counts (never embeddings)")
    _common(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_list)

    a = gsub.add_parser("export", help="write an encrypted copy (optionally under another key)")
    _common(a)
    a.add_argument("dest", type=Path)
    a.add_argument("--force", action="store_true", help="overwrite DEST")
    a.add_argument("--create-key", action="store_true", help="create --to-key-file if missing")
    _add_key_options(a, "to-", "export")
    a.set_defaults(func=_export)

    a = gsub.add_parser("import", help="merge people from an exported gallery")
    _common(a)
    a.add_argument("source", type=Path)
    a.add_argument(
        "--replace", action="store_true", help="same id: take the imported one even if older"
    )
    _add_key_options(a, "from-", "imported file")
    a.set_defaults(func=_import)

    a = gsub.add_parser("rekey", help="re-encrypt under a new key or passphrase")
    _common(a)
    a.add_argument("--create-key", action="store_true", help="create --new-key-file if missing")
    _add_key_options(a, "new-", "new")
    a.set_defaults(func=_rekey)

    a = gsub.add_parser("check", help="verify the gallery and its backup decrypt and are intact")
    _common(a)
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

    a = sub.add_parser("identify", help="who is in this photo? (1:N against the gallery)")
    _common(a)
    a.add_argument("image", type=Path)
    a.add_argument("--top-k", type=int, default=3)
    a.add_argument(
        "--far",
        type=float,
        default=DEFAULT_FAR,
        help="false accept rate whose calibrated threshold decides (1e-3)",
    )
    a.add_argument("--threshold", type=float, help="cosine threshold (overrides --far)")
    a.add_argument(
        "--select",
        choices=["largest", "central"],
        default="largest",
        help="which face when there are several (default: largest)",
    )
    a.add_argument("--all-faces", action="store_true", help="every face, each labelled")
    a.add_argument("--json", action="store_true")
    from edgeface.cli.liveness_opts import add_liveness_option

    add_liveness_option(a)
    a.set_defaults(func=_identify)


# --------------------------------------------------------------------------- commands
def _init(args: argparse.Namespace) -> int:
    if args.max_templates < 1:
        raise ConfigError("--max-templates must be at least 1")
    path = args.gallery or default_gallery_path()
    if args.gallery is None:  # the default place (XDG data dir) is ours to create
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise GalleryError(f"{path.parent}: cannot create directory ({exc.strerror})") from exc
    elif not path.parent.is_dir():  # a typo in --gallery must not create a directory tree
        raise GalleryError(f"{path.parent}: directory does not exist; create it first")
    gf = _gallery_file(args, new=True)
    gf.create(max_templates=args.max_templates, keep_crops=args.keep_crops)
    crops = ", keeps face crops" if args.keep_crops else ""
    print(f"created empty gallery {gf.path} ({gf.key.description}{crops})")
    return 0


def _settings(args: argparse.Namespace) -> int:
    gf = _gallery_file(args)
    keep = args.keep_crops == "on"
    # turning crops off also rewrites the backup, so no face image stays behind in it
    with gf.edit(purge_backup=not keep) as g:
        g.set_keep_crops(keep)
        missing = g.missing_crops() if keep else 0
    note = f"; {missing} existing template(s) have no crop until re-enrolled" if missing else ""
    print(f"{gf.path}: keep_crops {'on' if keep else 'off'}{note}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from edgeface.embedder import Embedder, EmbedderConfig
    from edgeface.gallery.migrate import needs_migration, reembed

    gf = _gallery_file(args)
    embedder = Embedder.from_config(
        EmbedderConfig(
            model=args.model, path=str(args.embedder), backend=args.backend, flip=not args.no_flip
        )
    )
    new_model = ModelRef.of(embedder)
    with WriterLock(gf.path, gf.lock_timeout):
        g = gf.load()
        if not needs_migration(g.model, new_model):
            print(f"{gf.path}: already made with {new_model.describe()}; nothing to do")
            return 0
        migrated = reembed(g, embedder)
        gf.save(migrated)  # the previous generation stays in the .bak file
    print(
        f"{gf.path}: re-embedded {migrated.n_templates} template(s) of {len(migrated)} people "
        f"with {new_model.describe()} (generation {migrated.generation}; the previous one is "
        f"in {gf.backup_path})"
    )
    return 0


def _gates(args: argparse.Namespace) -> Any:
    from edgeface.gallery.quality import QualityGates

    over = {
        k: v
        for k, v in (
            ("min_face_size", args.min_face_size),
            ("min_sharpness", args.min_sharpness),
            ("max_yaw", args.max_yaw),
        )
        if v is not None
    }
    return QualityGates(**over)


def _enroll(args: argparse.Namespace) -> int:
    from edgeface.gallery.enroll import (
        LOOKALIKE_FAR,
        Enroller,
        camera_frames,
        person_dirs,
        require_templates,
        screen_new_person,
    )

    if args.dir is not None:
        if args.name or args.images:
            raise ConfigError("--dir enrolls everyone under ROOT; give no NAME or IMAGES")
        jobs: list[tuple[str, Any]] = [(n, files) for n, files in person_dirs(args.dir)]
    elif args.name is None:
        raise ConfigError("give NAME and IMAGES, NAME --camera SOURCE, or --dir ROOT")
    elif args.camera is not None:
        if args.images:
            raise ConfigError("give either IMAGES or --camera, not both")
        jobs = [(args.name, None)]
    elif not args.images:
        raise ConfigError(f"no images given for {args.name!r}")
    else:
        jobs = [(args.name, args.images)]

    gf = _gallery_file(args)
    gallery = gf.load()  # fail early (wrong key, missing gallery) before slow face work
    pipeline = pipeline_factory()
    model = ModelRef.of(pipeline.embedder)
    gallery.check_model(model)
    max_t = gallery.max_templates
    from edgeface.cli.liveness_opts import liveness_checker

    enroller = Enroller(
        pipeline,
        gates=_gates(args),
        max_templates=max_t,
        take_largest=args.take_largest,
        liveness=liveness_checker(args),
    )
    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    plans = []
    for name, files in jobs:
        if files is None:
            frames = camera_frames(args.camera, max_frames=args.frames)
            plan = enroller.from_frames(name, frames, max_frames=args.frames)
        else:
            plan = enroller.from_files(name, progress(files, args, name, len(files)))  # type: ignore[arg-type]
        plans.append(plan)
        if not args.json:
            for c in plan.candidates:
                verdict = f"ok (quality {c.template.quality:.2f})" if c.template else c.reason
                print(f"  {name}: {c.source}: {verdict}")
    threshold = pipeline.threshold(args.far)
    lookalike = pipeline.threshold(LOOKALIKE_FAR)

    def screen(g: Any, plan: Any, exclude_id: str | None = None) -> list[str]:
        s = screen_new_person(g, plan.name, plan.templates, duplicate_threshold=threshold,
                              lookalike_threshold=lookalike, exclude_id=exclude_id)  # fmt: skip
        return s.enforce(strict=args.strict, allow_duplicate=args.allow_duplicate)

    report: list[dict[str, Any]] = []
    failures = 0
    if args.dry_run:
        for plan in plans:
            existing = gallery.by_name(plan.name) if args.add else []
            warnings = screen(gallery, plan, existing[0].id if existing else None)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            report.append(
                {
                    "name": plan.name,
                    "templates": len(plan.templates),
                    "images": [c.to_dict() for c in plan.candidates],
                    "looks_like": warnings,
                }
            )
        if args.json:
            _print_json(report)
        return 0
    with gf.edit() as g:
        for plan in plans:
            entry: dict[str, Any] = {
                "name": plan.name,
                "images": [c.to_dict() for c in plan.candidates],
            }
            report.append(entry)
            try:
                require_templates(plan)
                existing = g.by_name(plan.name)
                if existing and args.add:
                    if len(existing) > 1:
                        raise GalleryError(f"{len(existing)} people are named {plan.name!r}")
                    target = existing[0].id
                    warnings = screen(g, plan, target)
                    info = g.add_templates(target, plan.templates)
                    entry["action"] = "updated"
                elif existing and not args.new:
                    raise GalleryError(
                        f"{plan.name!r} is already enrolled (id {existing[0].id}); use --add to "
                        "add these photos to that person or --new for a different person"
                    )
                else:
                    warnings = screen(g, plan)
                    info = g.add_identity(plan.name, plan.templates)
                    entry["action"] = "enrolled"
            except EdgefaceError as exc:
                if len(plans) == 1:
                    raise
                failures += 1
                entry["error"] = str(exc)
                print(f"edgeface: {plan.name}: {exc}", file=sys.stderr)
                continue
            entry.update(
                id=info.id,
                templates=info.n_templates,
                rejected=len(plan.rejected),
                looks_like=warnings,
            )
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            if not args.json:
                print(
                    f"{entry['action']} {plan.name} (id {info.id}): "
                    f"{info.n_templates} template(s), {len(plan.rejected)} image(s) rejected"
                )
    if args.json:
        _print_json(report)
    if failures:
        raise NoFaceError(f"{failures} of {len(plans)} people could not be enrolled")
    return 0


def _remove(args: argparse.Namespace) -> int:
    gf = _gallery_file(args)
    with gf.edit(purge_backup=True) as g:
        info = g.remove(g.find(args.who).id)
    print(
        f"removed {info.name} (id {info.id}, {info.n_templates} template(s)); "
        f"{gf.path} and its backup rewritten"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    gf = _gallery_file(args)
    g = gf.load()
    people = g.identities()
    if args.json:
        _print_json(
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
    gf = _gallery_file(args)
    if args.dest.exists() and not args.force:
        raise GalleryError(f"{args.dest}: exists; use --force to overwrite")
    dest_key = key_from_args(args, "to_", new=True, fallback=False)
    g = gf.export_to(args.dest, dest_key)
    under = dest_key.description if dest_key else f"the same key ({gf.key.description})"
    print(f"exported {len(g)} people to {args.dest}, encrypted under {under}")
    return 0


def _import(args: argparse.Namespace) -> int:
    gf = _gallery_file(args)
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
    gf = _gallery_file(args)
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
    gf = _gallery_file(args)
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
    if args.with_model:
        pipeline = pipeline_factory()
        g.check_model(ModelRef.of(pipeline.embedder))
        result["model_matches"] = True
    if args.json:
        _print_json(result)
    else:
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


def _identify(args: argparse.Namespace) -> int:
    from edgeface.imaging import load_image

    gf = _gallery_file(args)
    g = gf.load()
    image = load_image(args.image)
    pipeline = pipeline_factory()
    model = ModelRef.of(pipeline.embedder)
    g.check_model(model)
    threshold = args.threshold if args.threshold is not None else pipeline.threshold(args.far)
    if args.threshold is None and len(g) * args.far > 0.05:
        # the calibrated threshold bounds false accepts per *comparison*; a stranger is
        # compared with everyone, so the chance of some false match grows with the gallery
        print(
            f"note: {len(g)} people enrolled: a stranger may pass the FAR {args.far:g} "
            f"threshold for someone with probability up to ~{min(1.0, len(g) * args.far):.0%}"
            "; consider a smaller --far",
            file=sys.stderr,
        )
    faces = pipeline.analyze(image)
    if not faces:
        raise NoFaceError(f"{args.image}: no face found")
    if not args.all_faces:
        from edgeface.recognition.pipeline import select_face

        chosen = select_face([r.face for r in faces], image.shape, args.select)
        faces = [r for r in faces if r.face is chosen]
    from edgeface.cli.liveness_opts import liveness_checker, refuse_spoof

    checker = liveness_checker(args)
    out = []
    for n, r in enumerate(faces, 1):
        live = {} if checker is None else {"liveness": refuse_spoof(checker, image, r.face,
                                                                     str(args.image))}  # fmt: skip
        d = g.identify(r.embedding, threshold, k=args.top_k, model=model)
        out.append({"face": r.face.to_dict(), **d.to_dict(), **live})
        if args.json:
            continue
        label = ""
        if args.all_faces:
            box = ", ".join(f"{v:.0f}" for v in r.face.box)
            label = f"face {n}/{len(faces)} [{box}]: "
        if d.known and d.best:
            print(
                f"{label}{d.best.name}  score {d.best.score:.3f} (threshold {threshold:.3f})"
                f"  id {d.best.identity_id}"
            )
        else:
            best = f"best: {d.best.name} {d.best.score:.3f}" if d.best else "gallery empty"
            print(f"{label}unknown  ({best}; threshold {threshold:.3f})")
    if args.json:
        _print_json({"image": str(args.image), "faces": out})
    # like verify: 0 = someone enrolled is in the photo, 1 = only strangers, 5 = no face
    return 0 if any(o["known"] for o in out) else 1
