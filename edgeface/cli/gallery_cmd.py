"""``edgeface gallery init|settings|migrate|enroll|remove|list|export|import|rekey|check``
and ``edgeface identify IMAGE``.

Key options are the same on every command: ``--key-file``, ``--passphrase-env VAR``,
``--passphrase-file``, ``--ask-passphrase`` or ``--credential NAME`` (systemd). Without one,
``$EDGEFACE_GALLERY_KEY_FILE`` is used, then the systemd credential ``edgeface-gallery.key``
if ``$CREDENTIALS_DIRECTORY`` has it. The gallery path is ``--gallery``, else
``$EDGEFACE_GALLERY``, else ``~/.local/share/edgeface/gallery.efg``.

Face images are stored only in a gallery created or set with ``--keep-crops`` (the aligned
112x112 crop of each template, encrypted with the rest), so that ``gallery migrate`` can
re-embed everyone for a new embedder. Enrollment is :mod:`edgeface.cli.gallery_enroll_cmd`,
the looking-after actions :mod:`edgeface.cli.gallery_admin_cmd`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeface.cli.gallery_admin_cmd import register_admin
from edgeface.cli.gallery_enroll_cmd import register_enroll
from edgeface.cli.gallery_options import (
    add_common,
    gallery_file,
    key_from_args,
    open_pipeline,
    print_json,
)
from edgeface.embedder.model import DEFAULT_EMBEDDER
from edgeface.errors import ConfigError, NoFaceError
from edgeface.gallery import GalleryError, ModelRef
from edgeface.gallery.keysource import default_gallery_path
from edgeface.recognition.calibration import DEFAULT_FAR

__all__ = ["key_from_args", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="the encrypted gallery of enrolled people")
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    gsub.required = True
    _register_init(gsub)
    _register_settings_migrate(gsub)
    register_enroll(gsub)
    register_admin(gsub)
    _register_identify(sub)


def _register_init(gsub: argparse._SubParsersAction) -> None:
    a = gsub.add_parser("init", help="create an empty encrypted gallery")
    add_common(a)
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


def _register_settings_migrate(gsub: argparse._SubParsersAction) -> None:
    a = gsub.add_parser("settings", help="turn crop keeping on or off for an existing gallery")
    add_common(a)
    a.add_argument("--keep-crops", choices=("on", "off"), required=True)
    a.set_defaults(func=_settings)

    a = gsub.add_parser(
        "migrate", help="re-embed every template with another embedder (needs kept crops)"
    )
    add_common(a)
    a.add_argument("--embedder", required=True, type=Path, help="the new embedder model file")
    a.add_argument(
        "--model",
        default=DEFAULT_EMBEDDER,
        help=f"manifest entry whose preprocessing the file uses (default {DEFAULT_EMBEDDER})",
    )
    a.add_argument("--backend", default="onnxruntime")
    a.add_argument("--no-flip", action="store_true", help="the runtime embeds without flip")
    a.set_defaults(func=_migrate)


def _register_identify(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("identify", help="who is in this photo? (1:N against the gallery)")
    add_common(a)
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
    gf = gallery_file(args, new=True)
    gf.create(max_templates=args.max_templates, keep_crops=args.keep_crops)
    crops = ", keeps face crops" if args.keep_crops else ""
    print(f"created empty gallery {gf.path} ({gf.key.description}{crops})")
    return 0


def _settings(args: argparse.Namespace) -> int:
    gf = gallery_file(args)
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
    from edgeface.gallery.migrate import migrate_file

    gf = gallery_file(args)
    embedder = Embedder.from_config(
        EmbedderConfig(
            model=args.model, path=str(args.embedder), backend=args.backend, flip=not args.no_flip
        )
    )
    new_model = ModelRef.of(embedder)
    migrated = migrate_file(gf, embedder)
    if migrated is None:
        print(f"{gf.path}: already made with {new_model.describe()}; nothing to do")
        return 0
    print(
        f"{gf.path}: re-embedded {migrated.n_templates} template(s) of {len(migrated)} people "
        f"with {new_model.describe()} (generation {migrated.generation}; the previous one is "
        f"in {gf.backup_path})"
    )
    return 0


def _identify(args: argparse.Namespace) -> int:
    from edgeface.imaging import load_image

    gf = gallery_file(args)
    g = gf.load()
    image = load_image(args.image)
    pipeline = open_pipeline(args)
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
    if args.all_faces:
        faces = pipeline.analyze(image)
    else:  # the one recognition path: size filter, then --select, then align + embed
        best = pipeline.find(image, args.select).best
        faces = [best] if best is not None else []
    if not faces:
        raise NoFaceError(f"{args.image}: no face found")
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
        print_json({"image": str(args.image), "faces": out})
    # like verify: 0 = someone enrolled is in the photo, 1 = only strangers, 5 = no face
    return 0 if any(o["known"] for o in out) else 1
