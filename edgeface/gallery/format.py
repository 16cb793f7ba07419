"""The gallery file layout: a small authenticated header, then one AES-256-GCM ciphertext.

::

    offset  size  field
    0       8     magic  b"EFGALLRY"
    8       2     format version (uint16 little endian), currently 1
    10      4     header length H (uint32 little endian)
    14      H     header: UTF-8 JSON (KDF parameters, key check, model id/sha256, dim, ...)
    14+H    12    nonce (fresh random for every write)
    26+H    n     ciphertext of the payload
    end-16  16    GCM tag

Everything before the nonce (magic, version, length, header) is the GCM *associated data*:
it stays readable (so ``check`` can say which model and KDF a gallery uses without the key)
but any change to it fails authentication. The header carries no count of people: a thief
learns nothing about who or how many are enrolled. The payload encoding lives in
:mod:`edgeface.gallery.payload`; this module only seals and opens bytes.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeface.gallery.errors import GalleryError, TamperedError, WrongKeyError
from edgeface.gallery.keys import KeySource, derive_subkeys

MAGIC = b"EFGALLRY"
FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_PREFIX = struct.Struct("<8sHI")
#: a header is a few hundred bytes; anything this large is corruption, not a header
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Regions:
    """Byte ranges ``[start, end)`` of each part of a sealed file (for tests and ``check``)."""

    magic: tuple[int, int]
    version: tuple[int, int]
    header_len: tuple[int, int]
    header: tuple[int, int]
    nonce: tuple[int, int]
    ciphertext: tuple[int, int]
    tag: tuple[int, int]


def _dumps(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def seal(header: dict[str, Any], payload: bytes, key: KeySource, where: str) -> bytes:
    """Encrypt ``payload`` under ``key`` with ``header`` as associated data.

    ``header`` must contain ``kdf`` (from ``key.new_kdf()`` or the file being rewritten);
    ``key_check`` is filled in here.
    """
    sub = derive_subkeys(key.master_key(header["kdf"], where))
    header = {**header, "key_check": sub.check.hex()}
    hdr = _dumps(header)
    if len(hdr) > MAX_HEADER_BYTES:
        raise GalleryError(f"{where}: header too large ({len(hdr)} bytes)")
    aad = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hdr)) + hdr
    nonce = os.urandom(NONCE_BYTES)
    return aad + nonce + AESGCM(sub.aead_key).encrypt(nonce, payload, aad)


def regions(data: bytes, where: str = "<bytes>") -> Regions:
    """Locate the parts of a sealed file, checking only lengths (no key needed)."""
    if len(data) < _PREFIX.size:
        raise TamperedError(
            f"{where}: truncated or not a gallery ({len(data)} bytes, shorter than the header)"
        )
    magic, _version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise TamperedError(f"{where}: not an edgeface gallery (bad magic bytes)")
    if hlen > MAX_HEADER_BYTES:
        raise TamperedError(f"{where}: corrupt header length ({hlen} bytes)")
    h0 = _PREFIX.size
    n0 = h0 + hlen
    c0 = n0 + NONCE_BYTES
    if len(data) < c0 + TAG_BYTES:
        raise TamperedError(
            f"{where}: truncated ({len(data)} bytes; at least {c0 + TAG_BYTES} expected)"
        )
    return Regions(
        magic=(0, 8),
        version=(8, 10),
        header_len=(10, h0),
        header=(h0, n0),
        nonce=(n0, c0),
        ciphertext=(c0, len(data) - TAG_BYTES),
        tag=(len(data) - TAG_BYTES, len(data)),
    )


def read_header(data: bytes, where: str = "<bytes>") -> dict[str, Any]:
    """Parse the (not yet authenticated!) header; used to find the KDF and the model."""
    reg = regions(data, where)
    _magic, version, _hlen = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise GalleryError(
            f"{where}: gallery format version {version} is not supported "
            f"(this edgeface reads version {FORMAT_VERSION}); the file is newer or corrupt"
        )
    try:
        header = json.loads(data[reg.header[0] : reg.header[1]].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TamperedError(f"{where}: corrupt header (not valid JSON)") from exc
    if not isinstance(header, dict) or not isinstance(header.get("kdf"), dict):
        raise TamperedError(f"{where}: corrupt header (missing KDF parameters)")
    return header


def open_sealed(data: bytes, key: KeySource, where: str) -> tuple[dict[str, Any], bytes]:
    """Authenticate and decrypt; return ``(header, payload)``.

    Raises :class:`WrongKeyError` when the key check differs (wrong key/passphrase), and
    :class:`TamperedError` for any structural damage or a failed GCM tag.
    """
    header = read_header(data, where)
    reg = regions(data, where)
    sub = derive_subkeys(key.master_key(header["kdf"], where))
    if header.get("key_check") != sub.check.hex():
        raise WrongKeyError(
            f"{where}: wrong key: the {key.description} does not open this gallery "
            "(or its header was altered)"
        )
    view = memoryview(data)  # slices of a memoryview copy nothing (the payload may be 150 MB)
    aad = view[: reg.header[1]]
    nonce = view[reg.nonce[0] : reg.nonce[1]]
    try:
        payload = AESGCM(sub.aead_key).decrypt(nonce, view[reg.nonce[1] :], aad)
    except InvalidTag as exc:
        raise TamperedError(
            f"{where}: authentication failed: the file was modified, truncated or damaged "
            "(the previous generation may still be in the .bak file next to it)"
        ) from exc
    return header, payload
