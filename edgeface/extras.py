"""Which pip extra brings which third-party module, and the one error a missing one raises.

The base install is numpy + OpenCV only. A command that needs more (cryptography for the
gallery, onnxruntime for the embedder, ...) imports it inside the function that uses it; when
the import fails the user gets one line naming the extra to install, not a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeface.errors import ConfigError

#: top-level import name -> the extra of pyproject.toml that installs it
EXTRA_OF: dict[str, str] = {
    "cryptography": "crypto",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "lz4": "onnx",
    "ai_edge_litert": "tflite",
    "picamera2": "pi",
    "gpiozero": "pi",
    "gpiod": "gpio",
    "paho": "mqtt",
    "starlette": "kiosk",
    "uvicorn": "kiosk",
    "matplotlib": "eval",
    "tqdm": "eval",
    "joblib": "tools",
    "tensorflow": "tools",
    "tf_keras": "tools",
    "onnx2tf": "tools",
    "onnx_graphsurgeon": "tools",
    "sng4onnx": "tools",
    "psutil": "tools",
}


class MissingExtraError(ConfigError):
    """A command needs a package of an extra that is not installed (exit code 2)."""

    def __init__(self, module: str, extra: str | None = None) -> None:
        top = module.split(".")[0]
        self.module = top
        self.extra = extra or EXTRA_OF.get(top)
        if self.extra:
            hint = f"pip install 'edgeface[{self.extra}]'"
            msg = f"this command needs the '{self.extra}' extra ({top} is missing): {hint}"
        else:
            msg = f"this command needs the Python package '{top}', which is not installed"
        super().__init__(msg)


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(exc.name or module, extra) from exc


def missing_extra(exc: BaseException) -> MissingExtraError | None:
    """The one-line error for an ImportError of a known extra's module, else None."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in EXTRA_OF:
            return MissingExtraError(top)
    return None
