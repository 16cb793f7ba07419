"""Entry point of the ``edgeface`` command.

Sub-commands are registered by name in :data:`COMMANDS`; a command's module is imported only
when that command runs, so ``edgeface --help`` and the light commands work on a base install
(numpy + OpenCV) and never pay for the imports of the heavy ones. Each module exposes
``register(subparsers)`` and sets ``func`` on its parser(s).

Errors that edgeface raises on purpose become one line on stderr and the error's exit code; a
missing optional package names the extra to install; usage errors exit 2; Ctrl-C exits 130;
anything else is reported as an internal error (exit 70, ``--debug`` shows the traceback), so
a user never has to read a stack trace for a bad photo or a wrong key.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edgeface import __version__
from edgeface.blas_threads import use_one_blas_thread
from edgeface.errors import EdgefaceError
from edgeface.extras import missing_extra
from edgeface.quiet import third_party_quiet

if TYPE_CHECKING:
    from edgeface.recognition import FacePipeline

#: builds a face pipeline (see :func:`main`)
PipelineFactory = Callable[[], "FacePipeline"]

#: command name -> (module that registers it, one-line help), in the order ``--help`` lists
#: them. Adding a command is one line here plus its module.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("edgeface.cli.models_cmd", "list, fetch and verify model files"),
    "detect": ("edgeface.cli.detect_cmd", "find faces and their 5 landmarks in images"),
    "embed": ("edgeface.cli.recognize_cmd", "print the embedding of the main face in an image"),
    "verify": ("edgeface.cli.recognize_cmd", "are two photos the same person?"),
    "door": ("edgeface.cli.door_cmd", "run the door-access daemon (or --check its setup)"),
    "audit": ("edgeface.cli.door_cmd", "verify the door's hash-chained audit log"),
    "kiosk": ("edgeface.cli.kiosk_cmd", "run the touch-screen kiosk web app (or --check it)"),
    "gallery": ("edgeface.cli.gallery_cmd", "the encrypted gallery of enrolled people"),
    "identify": ("edgeface.cli.gallery_cmd", "who is in this photo? (1:N against the gallery)"),
    "eval": ("edgeface.cli.eval_cmd", "measure detection / recognition quality on research data"),
    "quantize": ("edgeface.cli.quantize_cmd", "build INT8 / FP16 models and the INT8 report"),
    "bench": ("edgeface.cli.bench_cmd", "time every embedder variant of an artifacts dir"),
    "fleet": ("edgeface.cli.fleet_cmd", "many doors over MQTT: enrollment, commands, audit"),
    "bundle": ("edgeface.cli.bundle_cmd", "signed model bundles: build, verify, install"),
    "deploy": ("edgeface.cli.deploy_cmd", "push a signed bundle to devices over OpenSSH"),
}

#: exit code of every usage error (unknown option, missing argument), as argparse uses
USAGE_EXIT = 2
INTERRUPTED_EXIT = 130


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (global options take no values)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others are listed by name)."""
    parser = argparse.ArgumentParser(
        prog="edgeface",
        description="Offline face detection and recognition for edge devices.",
        epilog="Run 'edgeface COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"edgeface {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of internal errors and third-party library warnings",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(sub)
    for name, (_module, short_help) in COMMANDS.items():
        if name not in sub.choices:  # listed, not imported
            sub.add_parser(name, help=short_help, add_help=False)
    return parser


def _error(message: str, code: int) -> int:
    print(f"edgeface: error: {message}", file=sys.stderr)
    return code


def main(
    argv: Sequence[str] | None = None, *, pipeline_factory: PipelineFactory | None = None
) -> int:
    """Run one command; ``pipeline_factory`` replaces how the gallery commands build their
    face pipeline (tests pass one already loaded)."""
    use_one_blas_thread()  # before the sub-commands import numpy
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index(_command_in(argv))] if _command_in(argv) else False
    try:
        with third_party_quiet(debug=debug):
            parser = build_parser(_command_in(argv))
            args = parser.parse_args(argv)
            if pipeline_factory is not None:
                args.pipeline_factory = pipeline_factory
            result = args.func(args)
            sys.stdout.flush()  # a closed pipe is reported here, not at interpreter exit
    except EdgefaceError as exc:
        return _error(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("edgeface: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        _close_stdout_quietly()
        return 0
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE_EXIT)
        return code
    except Exception as exc:
        extra = missing_extra(exc)
        if extra is not None:
            return _error(str(extra), extra.exit_code)
        if debug:
            raise
        print(
            f"edgeface: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for details)",
            file=sys.stderr,
        )
        return 70
    return int(result or 0)


def _close_stdout_quietly() -> None:
    """After a closed pipe (``edgeface ... | head``), stop Python's exit-time flush error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
