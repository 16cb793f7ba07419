"""What the offline commands (``quantize``, ``bench``) need before they import ONNX Runtime."""

from __future__ import annotations

from edgeface.errors import ConfigError


def quiet_onnxruntime() -> None:
    """ORT logs one warning per constant its optimizer folds away in QDQ models: noise."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    ort.set_default_logger_severity(3)


def require_tools() -> None:
    """Fail with the extra to install when the offline quantization tools are missing."""
    quiet_onnxruntime()
    try:
        import edgeface_tools.quantize  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"edgeface quantize needs the tools extra ({exc.name} missing): "
            "pip install 'edgeface[tools]'"
        ) from exc
