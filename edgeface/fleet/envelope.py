"""Signed, encrypted fleet messages: one format for gallery changes, snapshots and commands.

Wire format (one MQTT payload)::

    <header: canonical JSON, ASCII> "\\n" <body bytes>

The header carries ``v``, ``kind``, ``seq``, ``issued`` and kind-specific fields, plus ``sig``:
the operator's Ed25519 signature over the header *without* ``sig`` (canonical JSON), a newline
and the body. Canonical JSON (sorted keys, no spaces, ASCII) makes the signed bytes unambiguous
without trusting the broker to keep formatting.

Bodies that hold people (names, templates) are AES-256-GCM ciphertext under the fleet key,
with the unsigned header as associated data, so a body cannot be moved under another header
(another ``seq`` or ``op``) without failing to decrypt, on top of failing the signature.
The broker, and anyone who only has broker credentials, sees sequence numbers, operations and
identity counts, never names or templates.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeface.fleet.errors import FleetError, RefusedMessage

VERSION = 1
NONCE_BYTES = 12
#: the largest payload a device will parse (a 10k-identity snapshot is ~27 MB)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


# --- keys --------------------------------------------------------------------------------------


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The operator's private key: a 0600 file of 64 hex characters (the Ed25519 seed)."""
    from edgeface.gallery.keys import load_key_file

    return Ed25519PrivateKey.from_private_bytes(load_key_file(path).key)


def public_key_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A device's copy of the operator's public key (64 hex characters; may be world-readable)."""
    from edgeface.gallery.keys import parse_key_material

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FleetError(f"{p}: cannot read the operator public key ({exc.strerror})") from exc
    return Ed25519PublicKey.from_public_bytes(parse_key_material(data, str(p)))


# --- envelopes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    header: dict[str, Any]  # without "sig"
    body: bytes

    @property
    def kind(self) -> str:
        return str(self.header.get("kind"))

    @property
    def seq(self) -> int:
        return int(self.header["seq"])


def _signed_bytes(header: dict[str, Any], body: bytes) -> bytes:
    return canonical(header) + b"\n" + body


def seal(header: dict[str, Any], body: bytes, key: Ed25519PrivateKey) -> bytes:
    """Sign ``header`` (must not contain ``sig``) and ``body`` into one payload."""
    header = {"v": VERSION, **header}
    sig = base64.b64encode(key.sign(_signed_bytes(header, body))).decode("ascii")
    return canonical({**header, "sig": sig}) + b"\n" + body


def parse(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Split without checking the signature (for reports about refused messages)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise RefusedMessage("malformed", f"message of {len(payload)} bytes is too large")
    head, sep, body = bytes(payload).partition(b"\n")
    if not sep:
        raise RefusedMessage("malformed", "no header line")
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise RefusedMessage("malformed", f"header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise RefusedMessage("malformed", "header is not an object")
    return header, body


def open_envelope(payload: bytes, key: Ed25519PublicKey) -> Envelope:
    """Check the operator's signature; refuse unsigned, forged or malformed messages."""
    header, body = parse(payload)
    sig = header.pop("sig", None)
    if not isinstance(sig, str):
        raise RefusedMessage("unsigned", "message carries no signature")
    try:
        key.verify(base64.b64decode(sig, validate=True), _signed_bytes(header, body))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise RefusedMessage("bad_signature", "not signed by the operator key") from exc
    if header.get("v") != VERSION:
        raise RefusedMessage("malformed", f"unsupported version {header.get('v')!r}")
    if not isinstance(header.get("seq"), int) or header["seq"] < 1:
        raise RefusedMessage("malformed", "seq must be a positive integer")
    return Envelope(header, body)


# --- encrypted bodies --------------------------------------------------------------------------


def encrypt(key: bytes, plain: bytes, header: dict[str, Any]) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, canonical({"v": VERSION, **header}))


def decrypt(key: bytes, data: bytes, header: dict[str, Any]) -> bytes:
    if len(data) < NONCE_BYTES + 16:
        raise RefusedMessage("malformed", "encrypted body too short")
    try:
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], canonical(header))
    except InvalidTag as exc:
        raise RefusedMessage("bad_fleet_key", "body does not decrypt with this fleet key") from exc


# --- identities in a body ----------------------------------------------------------------------


@dataclass
class IdentityRecord:
    """One person as it travels: id, display name, templates (L2-normalized float32)."""

    id: str
    name: str
    embeddings: np.ndarray  # (T, D) float32
    quality: list[float]
    created: list[float]


def pack_identities(people: list[IdentityRecord]) -> bytes:
    dim = int(people[0].embeddings.shape[1]) if people else 0
    meta = {
        "dim": dim,
        "identities": [
            {"id": p.id, "name": p.name, "quality": p.quality, "created": p.created} for p in people
        ],
    }
    rows = [np.ascontiguousarray(p.embeddings, dtype="<f4") for p in people]
    raw = np.concatenate(rows).tobytes() if rows else b""
    return canonical(meta) + b"\n" + raw


def unpack_identities(plain: bytes) -> list[IdentityRecord]:
    head, _, raw = plain.partition(b"\n")
    try:
        meta = json.loads(head)
        dim = int(meta["dim"])
        items = meta["identities"]
        counts = [len(it["quality"]) for it in items]
        if not items:
            return []
        emb = np.frombuffer(raw, dtype="<f4")
        if dim <= 0 or emb.size != sum(counts) * dim:
            raise ValueError("template bytes do not match the identity list")
        emb = emb.reshape(-1, dim)
        out, row = [], 0
        for it, n in zip(items, counts, strict=True):
            out.append(
                IdentityRecord(
                    str(it["id"]),
                    str(it["name"]),
                    emb[row : row + n].astype(np.float32),
                    [float(q) for q in it["quality"]],
                    [float(c) for c in it["created"]],
                )
            )
            row += n
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise RefusedMessage("malformed", f"identity body unreadable ({exc})") from exc
