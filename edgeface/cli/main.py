"""Entry point of the ``edgeface`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser. Errors that edgeface raises on purpose become one line on stderr and
the error's exit code; anything else is reported as an internal error (``--debug`` shows the
traceback), so a user never has to read a stack trace for a bad photo or a wrong key.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgeface import __version__
from edgeface.blas_threads import use_one_blas_thread
from edgeface.errors import EdgefaceError

#: sub-command modules, in the order ``--help`` lists them
COMMANDS: list[str] = [
    "edgeface.cli.models_cmd",
    "edgeface.cli.detect_cmd",
    "edgeface.cli.recognize_cmd",
    "edgeface.cli.door_cmd",
    "edgeface.cli.kiosk_cmd",
    "edgeface.cli.gallery_cmd",
    "edgeface.cli.eval_cmd",
    "edgeface.cli.quantize_cmd",
    "edgeface.cli.fleet_cmd",
    "edgeface.cli.bundle_cmd",
    "edgeface.cli.deploy_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeface",
        description="Offline face detection and recognition for edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgeface {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    use_one_blas_thread()  # before the sub-commands import numpy
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except EdgefaceError as exc:
        print(f"edgeface: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeface: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"edgeface: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for details)",
            file=sys.stderr,
        )
        return 70
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
