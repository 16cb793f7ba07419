"""The backend registry: the one place that knows how backends differ (issue 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeface.backends import (
    BACKENDS,
    backend_for_format,
    format_backends,
    get_backend,
    open_session,
)
from edgeface.errors import ModelError


def test_numpy_backend_is_registered_without_importing_the_detector() -> None:
    code = (
        "import sys; from edgeface.backends import BACKENDS; "
        "assert 'numpy' in BACKENDS, sorted(BACKENDS); "
        "assert 'edgeface.detector' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_format_map_and_its_reverse_come_from_one_table() -> None:
    assert format_backends() == {"onnx": "onnxruntime", "tflite": "litert"}
    for fmt, name in format_backends().items():
        assert backend_for_format(fmt) == name
        assert get_backend(name).file_format == fmt
    with pytest.raises(ModelError, match="no inference backend"):
        backend_for_format("pt")


def test_layouts_and_default_mtcnn_files() -> None:
    assert {n: b.layout for n, b in BACKENDS.items()} == {
        "numpy": "NHWC",
        "onnxruntime": "NCHW",
        "litert": "NHWC",
    }
    assert get_backend("numpy").whole_cascade
    assert get_backend("numpy").mtcnn_entries() == {"mtcnn": "mtcnn"}
    assert get_backend("onnxruntime").mtcnn_entries() == {
        "pnet": "mtcnn-pnet-onnx",
        "rnet": "mtcnn-rnet-onnx",
        "onet": "mtcnn-onet-onnx",
    }
    assert get_backend("litert").mtcnn_entries() is None


def test_unknown_backend_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="unknown inference backend 'bogus'"):
        open_session(tmp_path / "x.onnx", "bogus")
    with pytest.raises(TypeError):
        BACKENDS["bogus"] = BACKENDS["numpy"]  # type: ignore[index]
