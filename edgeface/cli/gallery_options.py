"""Options and helpers shared by the ``edgeface gallery ...`` and ``identify`` commands.

Key options are the same on every command: ``--key-file``, ``--passphrase-env VAR``,
``--passphrase-file``, ``--ask-passphrase`` or ``--credential NAME`` (systemd); the rules
(one source, environment fallbacks) are :func:`edgeface.gallery.keysource.resolve_key`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.cli.main import PipelineFactory
from edgeface.cli.options import print_json  # noqa: F401  (the gallery commands import it here)
from edgeface.gallery import GalleryFile, KeySource
from edgeface.gallery.keysource import KeyChoice, default_gallery_path, resolve_key

if TYPE_CHECKING:
    from edgeface.recognition import FacePipeline


def default_pipeline() -> FacePipeline:
    from edgeface.recognition import FacePipeline

    return FacePipeline.default()


def add_key_options(p: argparse.ArgumentParser, prefix: str = "", what: str = "") -> None:
    """The five key options, named ``--{prefix}key-file`` etc."""
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


def add_common(p: argparse.ArgumentParser) -> None:
    """``--gallery`` and the key options, on every gallery command; also the default
    pipeline factory, which :func:`edgeface.cli.main.main` may replace."""
    p.add_argument(
        "--gallery",
        type=Path,
        default=None,
        metavar="PATH",
        help="gallery file (default: $EDGEFACE_GALLERY or ~/.local/share/edgeface/gallery.efg)",
    )
    add_key_options(p)
    p.set_defaults(pipeline_factory=default_pipeline)


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


def gallery_file(args: argparse.Namespace, *, new: bool = False) -> GalleryFile:
    """The gallery the options name, under the key they name."""
    path = args.gallery or default_gallery_path()
    key = key_from_args(args, new=new)
    assert key is not None
    return GalleryFile(path, key)


def open_pipeline(args: argparse.Namespace) -> FacePipeline:
    """The face pipeline, made by the factory the command was given."""
    factory: PipelineFactory = args.pipeline_factory
    return factory()
