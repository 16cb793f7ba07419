"""The bundle file: a signed manifest in front of a tar payload.

::

    offset   size  field
    0        8     magic b"EFBUNDLE"
    8        2     format version (uint16 little endian), currently 1
    10       4     manifest length M (uint32 little endian)
    14       M     manifest: UTF-8 JSON (sorted keys, no spaces)
    14+M     64    Ed25519 signature of bytes [0, 14+M)
    78+M     P     payload: an uncompressed POSIX tar of the release files

The manifest names the payload's exact size and sha256 and every member's size and sha256,
so one signature covers every byte of the file: a flipped bit anywhere (magic, lengths,
manifest, signature, tar headers, padding, contents) and a truncated or extended file are
refused by :func:`verify`, which reads the payload only to hash it. Nothing is unpacked
before the signature and the payload hash check out (:mod:`edgeface.bundle.unpack` then
checks every member again).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.bundle.errors import BundleError
from edgeface.bundle.keys import key_id

MAGIC = b"EFBUNDLE"
FORMAT_VERSION = 1
SIGNATURE_BYTES = 64
PREFIX = struct.Struct("<8sHI")
MAX_MANIFEST_BYTES = 1 << 20


def dumps(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signed_bytes(manifest_bytes: bytes) -> bytes:
    """What the signature covers: magic, format version, manifest length and manifest."""
    return PREFIX.pack(MAGIC, FORMAT_VERSION, len(manifest_bytes)) + manifest_bytes


@dataclass(frozen=True)
class Envelope:
    """A bundle whose structure was parsed; ``verified`` only after :func:`verify`."""

    path: Path
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: bytes
    payload_offset: int
    key_id: str
    verified: bool = False

    @property
    def payload_size(self) -> int:
        return int(self.manifest["payload"]["size"])


def write(path: Path, manifest: dict[str, Any], payload: Path, private_key: Any) -> None:
    """Sign ``manifest`` (which must already describe ``payload``) and write the bundle."""
    from edgeface.storage import staged_path

    mb = dumps(manifest)
    head = signed_bytes(mb)
    signature = private_key.sign(head)
    with staged_path(path) as tmp, open(tmp, "wb") as out, open(payload, "rb") as src:
        out.write(head)
        out.write(signature)
        while block := src.read(1 << 20):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def read(path: Path) -> Envelope:
    """Parse the header and manifest; no trust yet (see :func:`verify`)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(PREFIX.size)
            if len(head) < PREFIX.size:
                raise BundleError(f"{path}: truncated ({size} bytes): not a bundle")
            magic, version, mlen = PREFIX.unpack(head)
            if magic != MAGIC:
                raise BundleError(f"{path}: not an edgeface bundle (bad magic bytes)")
            if version != FORMAT_VERSION:
                raise BundleError(
                    f"{path}: bundle format {version} is not supported (this edgeface reads "
                    f"{FORMAT_VERSION}); the file is newer or corrupt"
                )
            if mlen > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: corrupt manifest length ({mlen} bytes)")
            mb = f.read(mlen)
            signature = f.read(SIGNATURE_BYTES)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bundle ({exc.strerror or exc})") from exc
    if len(mb) != mlen or len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"{path}: truncated ({size} bytes)")
    try:
        manifest = json.loads(mb.decode("utf-8"))
        kid = str(manifest["key_id"])
        payload_size = int(manifest["payload"]["size"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: corrupt manifest (the signature cannot match)") from exc
    offset = PREFIX.size + mlen + SIGNATURE_BYTES
    if size != offset + payload_size:
        what = "truncated" if size < offset + payload_size else "has extra bytes"
        raise BundleError(
            f"{path}: {what} ({size} bytes; the manifest says {offset + payload_size})"
        )
    return Envelope(path, manifest, mb, signature, offset, kid)


def verify(path: Path, trusted: dict[str, Any]) -> Envelope:
    """Check the signature against ``trusted`` keys and the payload's sha256, or raise."""
    from cryptography.exceptions import InvalidSignature

    env = read(path)
    key = trusted.get(env.key_id)
    if key is None:
        # the claimed id may itself be forged; no trusted key verifies the bytes either way
        known = ", ".join(sorted(trusted)) or "none"
        raise BundleError(
            f"{path}: signed by unknown key {env.key_id} (trusted: {known}); "
            "add the operator's public key to the trusted-keys directory if it is yours"
        )
    if key_id(key) != env.key_id:  # pragma: no cover - ids are computed from the keys
        raise BundleError(f"{path}: key id mismatch")
    try:
        key.verify(env.signature, signed_bytes(env.manifest_bytes))
    except InvalidSignature:
        raise BundleError(
            f"{path}: bad signature: the manifest or signature was modified, or not signed "
            f"by key {env.key_id}"
        ) from None
    h = hashlib.sha256()
    remaining = env.payload_size
    with open(path, "rb") as f:
        f.seek(env.payload_offset)
        while remaining:
            block = f.read(min(1 << 20, remaining))
            if not block:
                raise BundleError(f"{path}: truncated while hashing the payload")
            h.update(block)
            remaining -= len(block)
    if h.hexdigest() != env.manifest["payload"]["sha256"]:
        raise BundleError(
            f"{path}: tampered: the payload's sha256 differs from the signed manifest"
        )
    return Envelope(
        env.path, env.manifest, env.manifest_bytes, env.signature, env.payload_offset,
        env.key_id, verified=True,
    )  # fmt: skip
