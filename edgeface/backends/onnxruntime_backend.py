"""ONNX Runtime sessions (CPU here; CUDA / TensorRT providers on a Jetson by configuration)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeface.backends.base import SessionInfo
from edgeface.backends.registry import get_backend
from edgeface.errors import ModelError


class OnnxRuntimeSession:
    """One ``InferenceSession`` over an ONNX file.

    ``threads`` bounds intra-op threads: on a 2-core board, two threads and no spinning keep
    the camera thread responsive.
    """

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # INT8 QDQ models make ORT warn about every folded initializer on load: errors only
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available]
        if not chosen:
            raise ModelError(f"none of the providers {list(providers or [])} is available")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"{path}: ONNX Runtime cannot load this model ({exc})") from exc
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.info = SessionInfo(
            input_shape=shape,
            input_layout=get_backend("onnxruntime").layout,
            backend="onnxruntime",
            path=path,
        )
        self.providers = self._session.get_providers()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(None, {self._input_name: np.ascontiguousarray(x, np.float32)})
        return [np.asarray(o, dtype=np.float32) for o in outputs]
