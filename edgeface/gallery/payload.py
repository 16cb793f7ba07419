"""Plaintext encoding of the gallery: JSON metadata plus raw little-endian arrays, no pickle.

::

    b"EFGP" | uint32 meta length M | meta JSON (M bytes) | zero padding to 8 |
    created  float64[T]     template creation times (unix seconds)
    emb      float32[T, D]  unit-norm embeddings, rows grouped by identity in meta order
    quality  float32[T]
    model    uint16[T]      index into meta["models"]
    crops    uint8[T, 112*112*3]  only when meta has "crop_shape" (opt-in ``keep_crops``)

``meta`` = ``{"dim", "max_templates", "generation", "created", "models": [[id, sha256]...],
"identities": [[id, name, created, updated, n_templates], ...]}``, plus ``"crop_shape"`` when
the gallery keeps aligned crops. Files without it (every gallery written before crops existed)
decode exactly as before. Lists instead of objects
keep a 10k-person gallery's JSON small and fast to parse; the arrays are read with
``np.frombuffer`` (no per-template Python objects), which is what keeps opening fast.
Pickle is never used: a gallery file must not be able to run code.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from edgeface.gallery.errors import TamperedError

PAYLOAD_MAGIC = b"EFGP"
_LEN = struct.Struct("<4sI")


class IdentityRow(NamedTuple):
    """One identity's metadata; stored in the payload's JSON as a plain list in this order."""

    id: str
    name: str
    created: float
    updated: float
    n_templates: int

    def to_list(self) -> list[Any]:
        """The stored form, ``[id, name, created, updated, n_templates]``."""
        return list(self)


class TemplateColumns(NamedTuple):
    """One row per template, grouped by identity in identity order."""

    created: np.ndarray  # (T,) float64
    emb: np.ndarray  # (T, D) float32
    quality: np.ndarray  # (T,) float32
    model: np.ndarray  # (T,) uint16, index into the model list
    crops: np.ndarray  # (T, crop bytes) uint8; (T, 0) when crops are not kept


@dataclass
class Columns:
    """The decoded payload: identity metadata plus one row per template in four arrays."""

    meta: dict[str, Any]
    identities: list[IdentityRow]
    created: np.ndarray  # (T,) float64
    emb: np.ndarray  # (T, D) float32
    quality: np.ndarray  # (T,) float32
    model: np.ndarray  # (T,) uint16
    crops: np.ndarray | None = None  # (T, prod(crop_shape)) uint8, or None


def encode(meta: dict[str, Any], cols: Columns) -> bytes:
    meta = {**meta, "identities": [r.to_list() for r in cols.identities]}
    mj = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    head = _LEN.pack(PAYLOAD_MAGIC, len(mj)) + mj
    head += b"\0" * (-len(head) % 8)
    return b"".join(
        [
            head,
            np.ascontiguousarray(cols.created, dtype="<f8").tobytes(),
            np.ascontiguousarray(cols.emb, dtype="<f4").tobytes(),
            np.ascontiguousarray(cols.quality, dtype="<f4").tobytes(),
            np.ascontiguousarray(cols.model, dtype="<u2").tobytes(),
            b"" if cols.crops is None else np.ascontiguousarray(cols.crops, np.uint8).tobytes(),
        ]
    )


def decode(data: bytes, where: str) -> Columns:
    """Decode and validate a payload. Authenticated data that fails validation is a bug or a
    foreign writer, so it is reported as corruption, never repaired silently."""

    def bad(why: str) -> TamperedError:
        return TamperedError(f"{where}: corrupt gallery contents ({why})")

    if len(data) < _LEN.size:
        raise bad("payload too short")
    magic, mlen = _LEN.unpack_from(data)
    if magic != PAYLOAD_MAGIC or _LEN.size + mlen > len(data):
        raise bad("bad payload header")
    try:
        meta = json.loads(bytes(data[_LEN.size : _LEN.size + mlen]).decode("utf-8"))
        identities = [IdentityRow(*r) for r in meta.pop("identities")]
        dim = int(meta["dim"])
        models = meta["models"]
        counts = np.fromiter(
            (int(r.n_templates) for r in identities), dtype=np.int64, count=len(identities)
        )
        crop_shape = meta.get("crop_shape")
        crop_bytes = 0 if crop_shape is None else int(np.prod([int(v) for v in crop_shape]))
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise bad(f"metadata: {exc}") from exc
    if dim <= 0 or (counts.size and counts.min() < 1):
        raise bad("bad dimension or identity without templates")
    if len({r.id for r in identities}) != len(identities):
        raise bad("duplicate identity ids")
    t = int(counts.sum())
    off = _LEN.size + mlen
    off += -off % 8
    sizes = (8 * t, 4 * t * dim, 4 * t, 2 * t)
    if crop_shape is not None and crop_bytes <= 0:
        raise bad("bad crop shape")
    if off + sum(sizes) + t * crop_bytes != len(data):
        raise bad(f"array sizes do not add up ({len(data)} bytes for {t} templates)")
    out = []
    for dtype, size in zip(("<f8", "<f4", "<f4", "<u2"), sizes, strict=True):
        out.append(
            np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=off)
        )
        off += size
    created, emb, quality, model = out
    crops = None
    if crop_shape is not None:
        crops = np.frombuffer(data, np.uint8, count=t * crop_bytes, offset=off)
        crops = crops.reshape(t, crop_bytes)
    if model.size and int(model.max()) >= len(models):
        raise bad("template refers to an unknown model")
    return Columns(
        meta=meta,
        identities=identities,
        created=created,
        emb=emb.reshape(t, dim),
        quality=quality,
        model=model,
        crops=crops,
    )
