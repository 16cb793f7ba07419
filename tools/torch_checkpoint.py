"""Read PyTorch ``torch.save`` checkpoints into NumPy arrays without torch.

The converters need the weights of a few upstream checkpoints (MiniFASNet, EdgeFace), and
installing torch for that would put a gigabyte on every operator's machine. A checkpoint is a
pickle whose tensors point at raw little-endian storages, so a restricted unpickler can read
it safely: only the handful of globals a state_dict needs are resolved, every other global
raises, so a crafted file cannot run code. The runtime never unpickles anything; only the
offline tools call this.

Both formats torch has written are understood:

* the zip format (torch >= 1.6): ``<top>/data.pkl`` plus one ``<top>/data/<key>`` member per
  storage;
* the legacy format: four pickles in a row (magic number, protocol version, sys info, the
  object), a pickled list of storage keys, then each storage as an int64 element count and
  its raw bytes, in that list's order.

Quantized tensors (``torch._utils._rebuild_qtensor``, per-tensor affine ``qint8``) are
returned as :class:`QuantizedArray` so the caller can dequantize them explicitly.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointError(ValueError):
    """The file is not a torch checkpoint this reader accepts (or asks for a forbidden global)."""


@dataclass(frozen=True)
class StorageType:
    """A torch storage class, known by the element type it holds."""

    name: str
    dtype: np.dtype


STORAGE_TYPES: dict[str, StorageType] = {
    name: StorageType(name, np.dtype(dt))
    for name, dt in {
        "FloatStorage": "<f4",
        "DoubleStorage": "<f8",
        "HalfStorage": "<f2",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
        "QInt8Storage": "i1",
        "QUInt8Storage": "u1",
        "QInt32Storage": "<i4",
    }.items()
}


@dataclass(frozen=True)
class QuantizedArray:
    """A per-tensor affine quantized tensor: ``real = (values - zero_point) * scale``."""

    values: np.ndarray
    scale: float
    zero_point: int

    def dequantize(self) -> np.ndarray:
        return ((self.values.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)


@dataclass(frozen=True)
class _Marker:
    """Stand-in for torch singletons such as ``torch.qint8`` or ``torch.per_tensor_affine``."""

    name: str


@dataclass
class _StorageRef:
    kind: StorageType
    key: str
    numel: int
    data: np.ndarray | None = None


def _view(storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    if storage.data is None:
        raise CheckpointError(f"storage {storage.key} has no data")
    flat = storage.data
    if not size:
        return flat[offset].copy()
    item = flat.itemsize
    needed = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    if offset < 0 or needed > flat.size:
        raise CheckpointError(f"tensor view past the end of storage {storage.key}")
    strided = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(st * item for st in stride), writeable=False
    )
    return np.ascontiguousarray(strided)


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes may come later (legacy files store them after the pickle)."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    quantizer: tuple[float, int] | None = None

    def resolve(self) -> np.ndarray | QuantizedArray:
        values = _view(self.storage, self.offset, self.size, self.stride)
        if self.quantizer is None:
            return values
        return QuantizedArray(values, *self.quantizer)


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest) -> _PendingTensor:
    return _PendingTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_rest):
    return data


def _rebuild_qtensor(storage, offset, size, stride, quantizer_params, *_rest) -> _PendingTensor:
    scheme = quantizer_params[0]
    if getattr(scheme, "name", None) != "per_tensor_affine":
        raise CheckpointError(f"unsupported quantization scheme {scheme!r}")
    quantizer = (float(quantizer_params[1]), int(quantizer_params[2]))
    return _PendingTensor(storage, int(offset), tuple(size), tuple(stride), quantizer)


def _resolve(obj: Any) -> Any:
    """Replace every pending tensor in nested dicts, lists and tuples by its array."""
    if isinstance(obj, _PendingTensor):
        return obj.resolve()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


_MARKERS = {"qint8", "quint8", "qint32", "per_tensor_affine", "float32", "float16", "int64"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a state_dict needs; storages come back as references."""

    def __init__(self, file: io.BufferedIOBase, load_storage: Callable[[_StorageRef], None]):
        super().__init__(file)
        self._load_storage = load_storage
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_qtensor"): _rebuild_qtensor,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in STORAGE_TYPES:
            return STORAGE_TYPES[name]
        if module == "torch" and name in _MARKERS:
            return _Marker(name)
        raise CheckpointError(f"checkpoint asks for a forbidden global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, StorageType):
            raise CheckpointError(f"unknown storage type {kind!r}")
        if key not in self.storages:
            ref = _StorageRef(kind, key, numel)
            self._load_storage(ref)
            self.storages[key] = ref
        return self.storages[key]


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl, found {len(pickles)}")
        top = pickles[0][: -len("data.pkl")]
        members = set(archive.namelist())

        def load(ref: _StorageRef) -> None:
            name = f"{top}data/{ref.key}"
            if name not in members:
                raise CheckpointError(f"{path}: storage member {name} missing")
            raw = archive.read(name)
            expected = ref.numel * ref.kind.dtype.itemsize
            if len(raw) < expected:
                raise CheckpointError(f"{path}: storage {ref.key} is truncated")
            ref.data = np.frombuffer(raw[:expected], ref.kind.dtype)

        with archive.open(pickles[0]) as f:
            return _RestrictedUnpickler(io.BufferedReader(f), load).load()  # type: ignore[arg-type]


def _read_legacy(path: Path) -> Any:
    raw = path.read_bytes()
    f = io.BytesIO(raw)
    plain = _RestrictedUnpickler(f, lambda ref: None)
    if plain.load() != LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
    if plain.load() != LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: unsupported legacy protocol version")
    sys_info = plain.load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise CheckpointError(f"{path}: only little-endian checkpoints are supported")
    pending: list[_StorageRef] = []
    obj_unpickler = _RestrictedUnpickler(f, pending.append)
    obj = obj_unpickler.load()
    keys = _RestrictedUnpickler(f, lambda ref: None).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: storage key list missing")
    by_key = {ref.key: ref for ref in pending}
    for key in keys:
        ref = by_key.get(str(key))
        count_bytes = f.read(8)
        if len(count_bytes) != 8:
            raise CheckpointError(f"{path}: truncated before storage {key}")
        count = int(np.frombuffer(count_bytes, "<i8")[0])
        itemsize = ref.kind.dtype.itemsize if ref is not None else 0
        if ref is None or count != ref.numel:
            raise CheckpointError(f"{path}: storage {key} does not match its reference")
        data = f.read(count * itemsize)
        if len(data) != count * itemsize:
            raise CheckpointError(f"{path}: storage {key} is truncated")
        ref.data = np.frombuffer(data, ref.kind.dtype)
    return obj


def load_checkpoint(path: str | Path) -> Any:
    """The checkpoint's object (usually an ``OrderedDict`` of NumPy arrays), without torch.

    Raises :class:`CheckpointError` for anything that is not a plain state_dict-like pickle.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _resolve(_read_zip(path))
        return _resolve(_read_legacy(path))
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc


def state_dict(path: str | Path, strip_prefix: str = "") -> dict[str, Any]:
    """The checkpoint as a flat ``name -> array`` dict, with ``strip_prefix`` removed."""
    obj = load_checkpoint(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key[len(strip_prefix) :] if strip_prefix and key.startswith(strip_prefix) else key
        out[name] = value
    return out
