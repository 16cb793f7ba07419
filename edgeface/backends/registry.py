"""The one place that knows how inference backends differ.

Each backend is a :class:`Backend` record: the factory that opens a session (imported only
when the backend is used, so a Pi without ONNX Runtime still runs LiteRT or NumPy), the input
layout of its models, the model file format it runs, the pip extra that installs it, and
where its MTCNN files come from by default. Code elsewhere asks these records instead of
comparing backend names, and the format -> backend map (``"tflite"`` -> ``"litert"``) used
by the quantization tools and benchmarks is derived from them here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from edgeface.errors import ModelError

Layout = Literal["NCHW", "NHWC"]
MTCNN_NETS = ("pnet", "rnet", "onet")


@dataclass(frozen=True)
class Backend:
    """What differs between inference backends; one record per backend name."""

    name: str
    #: ``"module:factory"``; the module is imported only when a session is opened
    target: str
    #: layout of the models this backend runs (sessions report it as ``info.input_layout``)
    layout: Layout
    #: file format of its model artifacts (``quantize build`` ``format`` field); None: the
    #: backend reads edgeface's own weight file (one file for the whole MTCNN cascade)
    file_format: str | None = None
    #: pip extra that installs its runtime (None: nothing beyond edgeface itself)
    extra: str | None = None
    #: manifest entry of each MTCNN net's default file (``{net}`` is replaced); None: the
    #: backend has no default and ``DetectorConfig.models`` must name the files
    mtcnn_entry: str | None = None

    @property
    def whole_cascade(self) -> bool:
        """One weight file holds P-, R- and O-Net (sessions are opened with ``net=``).

        Only such a backend can run in the detector's helper processes, which are handed
        the weight file and open their own sessions.
        """
        return self.file_format is None

    def mtcnn_entries(self) -> dict[str, str] | None:
        """Role -> manifest entry of the default MTCNN files, or None if there is none.

        A whole-cascade backend has one role, ``"mtcnn"``; the others one per net.
        """
        if self.mtcnn_entry is None:
            return None
        if self.whole_cascade:
            return {"mtcnn": self.mtcnn_entry}
        return {net: self.mtcnn_entry.format(net=net) for net in MTCNN_NETS}


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Add (or replace) a backend; its runtime is not imported until a session is opened."""
    _REGISTRY[backend.name] = backend


register_backend(
    Backend(
        "numpy",
        "edgeface.detector.networks:NumpyMTCNNSession",
        layout="NHWC",
        mtcnn_entry="mtcnn",
    )
)
register_backend(
    Backend(
        "onnxruntime",
        "edgeface.backends.onnxruntime_backend:OnnxRuntimeSession",
        layout="NCHW",
        file_format="onnx",
        extra="onnx",
        mtcnn_entry="mtcnn-{net}-onnx",
    )
)
register_backend(
    Backend(
        "litert",
        "edgeface.backends.litert_backend:LiteRTSession",
        layout="NHWC",
        file_format="tflite",
        extra="tflite",
    )
)

#: backend name -> its record (read-only view; add backends with :func:`register_backend`)
BACKENDS: Mapping[str, Backend] = MappingProxyType(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The record of ``name``; an unknown name is a :class:`ModelError` listing the known."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown inference backend '{name}' (known: {known})") from None


def backend_for_format(file_format: str) -> str:
    """The backend that runs artifacts of ``file_format`` (``"onnx"``, ``"tflite"``)."""
    for b in _REGISTRY.values():
        if b.file_format == file_format:
            return b.name
    raise ModelError(f"no inference backend runs '{file_format}' files")


def format_backends() -> dict[str, str]:
    """Artifact format -> backend name, e.g. ``{"onnx": "onnxruntime", "tflite": "litert"}``."""
    return {b.file_format: b.name for b in _REGISTRY.values() if b.file_format is not None}
