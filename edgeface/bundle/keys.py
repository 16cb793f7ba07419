"""Ed25519 signing keys: the operator's private key and a device's trusted public keys.

The private key is a PEM (PKCS#8) file of mode 0600 on the operator's workstation; the
public key is a PEM file copied to every device's trusted-keys directory
(``/etc/edgeface/trusted-keys/`` by default). A key is named by its *key id*, the first 16 hex
digits of the sha256 of the raw 32-byte public key, which the signed manifest carries so the
device can say "unknown key" rather than just "bad signature".
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from edgeface.bundle.errors import BundleError
from edgeface.errors import ConfigError, StorageError

DEFAULT_TRUSTED_KEYS = Path("/etc/edgeface/trusted-keys")
PUBLIC_SUFFIXES = (".pub", ".pem")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # the crypto extra is optional
        raise ConfigError(
            "bundles need the 'cryptography' package: pip install 'edgeface[crypto]'"
        ) from exc
    return serialization, ed25519


def key_id(public_key: Any) -> str:
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (private mode 0600, refusing to overwrite); return its key id."""
    serialization, ed25519 = _crypto()
    for p in (private_path, public_path):
        if p.exists():
            raise StorageError(f"{p}: exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        public_path.parent.mkdir(parents=True, exist_ok=True)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise StorageError(f"cannot write the key pair: {exc.strerror or exc}") from exc
    return key_id(key.public_key())


def load_private(path: Path) -> Any:
    """The signing key; refused when other users may read it."""
    serialization, ed25519 = _crypto()
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the signing key ({exc.strerror or exc})") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: signing key is readable by others; chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM private key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def load_public(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


def trusted_keys(directory: Path) -> dict[str, Any]:
    """key id -> public key for every ``*.pub`` / ``*.pem`` file in ``directory``."""
    if not directory.is_dir():
        raise BundleError(
            f"{directory}: no trusted-keys directory; copy the operator's public key there "
            "(edgeface bundle keygen writes it)"
        )
    keys: dict[str, Any] = {}
    for p in sorted(directory.iterdir()):
        if p.suffix in PUBLIC_SUFFIXES and p.is_file():
            k = load_public(p)
            keys[key_id(k)] = k
    if not keys:
        raise BundleError(f"{directory}: no trusted public keys (*.pub) in it")
    return keys
