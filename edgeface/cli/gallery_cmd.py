"""``edgeface gallery init|enroll|remove|list|export|import|rekey|check`` and
``edgeface identify IMAGE``.

Key options are the same on every command: ``--key-file``, ``--passphrase-env VAR``,
``--passphrase-file``, ``--ask-passphrase`` or ``--credential NAME`` (systemd). Without one,
``$EDGEFACE_GALLERY_KEY_FILE`` is used, then the systemd credential ``edgeface-gallery.key``
if ``$CREDENTIALS_DIRECTORY`` has it. The gallery path is ``--gallery``, else
``$EDGEFACE_GALLERY``, else ``~/.local/share/edgeface/gallery.efg``.

``list`` never prints embeddings, and no face images are ever stored.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError, EdgefaceError, NoFaceError
from edgeface.gallery import (
    GalleryError,
    GalleryFile,
    KeySource,
    KeySourceError,
    ModelRef,
    Passphrase,
    TamperedError,
    create_key_file,
    load_key_file,
    load_systemd_credential,
)
from edgeface.gallery.durable import WriterLock, atomic_write
from edgeface.gallery.keys import CREDENTIAL_DEFAULT_NAME

DEFAULT_FAR = 1e-3


def _default_pipeline() -> Any:
    from edgeface.recognition import FacePipeline

    return FacePipeline.default()


#: how the CLI gets its face pipeline; tests replace it to reuse one loaded pipeline
pipeline_factory: Callable[[], Any] = _default_pipeline


# --------------------------------------------------------------------------- options
def default_gallery_path() -> Path:
    env = os.environ.get("EDGEFACE_GALLERY")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "edgeface" / "gallery.efg"


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
        help="read the passphrase from the first line of a file",
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


def _read_passphrase_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeySourceError(f"{path}: cannot read passphrase file ({exc.strerror})") from exc
    lines = text.splitlines()
    return lines[0] if lines else ""


def key_from_args(
    args: argparse.Namespace, prefix: str = "", *, new: bool = False, fallback: bool = True
) -> KeySource | None:
    """The key source chosen by the options with ``prefix`` (``""``, ``to_``, ``new_``...).

    ``new``: the key protects a file about to be written (init, rekey, export): passphrases
    are asked twice and must be long enough; ``--create-key`` may create the key file.
    """

    def opt(name: str) -> Any:
        return getattr(args, f"{prefix}{name}", None)

    chosen = [
        n
        for n in ("key_file", "passphrase_env", "passphrase_file", "ask_passphrase", "credential")
        if opt(n)
    ]
    if len(chosen) > 1:
        flags = ", ".join("--" + (prefix + n).replace("_", "-") for n in chosen)
        raise ConfigError(f"give only one key source ({flags})")
    source: KeySource | None = None
    if opt("key_file"):
        path = Path(opt("key_file"))
        if new and getattr(args, "create_key", False) and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            source = create_key_file(path)
            print(
                f"created key file {path} (mode 0600); keep a copy off the device", file=sys.stderr
            )
        else:
            source = load_key_file(path)
    elif opt("passphrase_env"):
        var = opt("passphrase_env")
        if var not in os.environ:
            raise KeySourceError(f"environment variable {var} is not set")
        source = Passphrase(os.environ[var])
    elif opt("passphrase_file"):
        source = Passphrase(_read_passphrase_file(opt("passphrase_file")))
    elif opt("ask_passphrase"):
        first = getpass.getpass("Gallery passphrase: ")
        if new and first != getpass.getpass("Repeat passphrase: "):
            raise KeySourceError("the two passphrases differ")
        source = Passphrase(first)
    elif opt("credential"):
        source = load_systemd_credential(opt("credential"))
    elif fallback and not prefix:
        env_key = os.environ.get("EDGEFACE_GALLERY_KEY_FILE")
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if env_key:
            source = load_key_file(env_key)
        elif creds and (Path(creds) / CREDENTIAL_DEFAULT_NAME).exists():
            source = load_systemd_credential(CREDENTIAL_DEFAULT_NAME)
        else:
            raise KeySourceError(
                "no gallery key given: use --key-file, --passphrase-env, --passphrase-file, "
                "--ask-passphrase or --credential (or set EDGEFACE_GALLERY_KEY_FILE)"
            )
    if new and isinstance(source, Passphrase):
        source.check_strength()
    return source


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
    a.set_defaults(func=_init)

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
    a.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    a.add_argument("--json", action="store_true")
    from edgeface.cli.liveness_opts import add_liveness_option

    add_liveness_option(a)
    a.set_defaults(func=_identify)


# --------------------------------------------------------------------------- commands
def _init(args: argparse.Namespace) -> int:
    gf = _gallery_file(args, new=True)
    if args.max_templates < 1:
        raise ConfigError("--max-templates must be at least 1")
    try:
        gf.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise GalleryError(f"{gf.path.parent}: cannot create directory ({exc.strerror})") from exc
    gf.create(max_templates=args.max_templates)
    print(f"created empty gallery {gf.path} ({gf.key.description})")
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
        Enroller,
        camera_frames,
        find_duplicates,
        person_dirs,
        require_templates,
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
    plans = []
    for name, files in jobs:
        if files is None:
            plan = enroller.from_frames(name, camera_frames(args.camera), max_frames=args.frames)
        else:
            plan = enroller.from_files(name, files)
        plans.append(plan)
        if not args.json:
            for c in plan.candidates:
                verdict = f"ok (quality {c.template.quality:.2f})" if c.template else c.reason
                print(f"  {name}: {c.source}: {verdict}")
    threshold = pipeline.threshold(args.far)
    report: list[dict[str, Any]] = []
    failures = 0
    if args.dry_run:
        for plan in plans:
            report.append(
                {
                    "name": plan.name,
                    "templates": len(plan.templates),
                    "images": [c.to_dict() for c in plan.candidates],
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
                    dups = find_duplicates(g, plan.templates, threshold, exclude_id=target)
                    info = g.add_templates(target, plan.templates)
                    entry["action"] = "updated"
                elif existing and not args.new:
                    raise GalleryError(
                        f"{plan.name!r} is already enrolled (id {existing[0].id}); use --add to "
                        "add these photos to that person or --new for a different person"
                    )
                else:
                    dups = find_duplicates(g, plan.templates, threshold)
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
                looks_like=[d.to_dict() for d in dups],
            )
            for d in dups:
                print(
                    f"warning: {plan.name} matches the enrolled {d.name!r} (id {d.identity_id}, "
                    f"score {d.score:.3f} >= threshold {threshold:.3f}); same person enrolled "
                    "twice, or a look-alike?",
                    file=sys.stderr,
                )
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
        with WriterLock(gf.path):
            backup = gf.load_backup()  # raises if the backup is bad too
            damaged = gf.path.with_name(f"{gf.path.name}.damaged-{int(time.time())}")
            os.replace(gf.path, damaged)
            atomic_write(gf.path, gf.backup_path.read_bytes(), backup=False)
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
        faces = faces[:1] if len(faces) == 1 else [max(faces, key=lambda r: r.face.area)]
    from edgeface.cli.liveness_opts import liveness_checker, refuse_spoof

    checker = liveness_checker(args)
    out = []
    for r in faces:
        live = {} if checker is None else {"liveness": refuse_spoof(checker, image, r.face,
                                                                     str(args.image))}  # fmt: skip
        d = g.identify(r.embedding, threshold, k=args.top_k, model=model)
        out.append({"face": r.face.to_dict(), **d.to_dict(), **live})
        if not args.json:
            if d.known and d.best:
                print(
                    f"{d.best.name}  score {d.best.score:.3f} (threshold {threshold:.3f})"
                    f"  id {d.best.identity_id}"
                )
            else:
                best = f"best: {d.best.name} {d.best.score:.3f}" if d.best else "gallery empty"
                print(f"unknown  ({best}; threshold {threshold:.3f})")
    if args.json:
        _print_json({"image": str(args.image), "faces": out})
    return 0
