"""Where the gallery key comes from: a key file, a passphrase, or a systemd credential.

A gallery is encrypted with a 256-bit *master key*. Three sources produce it:

* a **key file** (64 hex characters): created atomically with mode 0600; we refuse to read one
  that group or others can read, because a key next to the gallery on a stolen SD card is
  worthless if any local user could also have copied it;
* a **passphrase**, stretched with scrypt (memory-hard, in ``cryptography`` already, so no
  extra dependency); the salt and cost parameters go in the file header, which is
  authenticated, so they cannot be downgraded silently;
* a **systemd credential** (``LoadCredential=``/``LoadCredentialEncrypted=``), read from
  ``$CREDENTIALS_DIRECTORY``: on a device with a TPM, ``systemd-creds`` keeps the key off the
  card in the clear, which is the strongest option for an unattended door unit.

The master key is never used directly: HKDF splits it into an AES-256-GCM key and a short
key-check value stored in the header, so a wrong key gives "wrong key" instead of
"file tampered" (the check value reveals nothing the GCM tag does not already reveal).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from edgeface.gallery.errors import KeySourceError, TamperedError, WrongKeyError

KEY_BYTES = 32
SALT_BYTES = 16

#: scrypt cost for new galleries: N=2^15, r=8 -> 32 MiB and ~0.1 s on a laptop core,
#: ~0.5 s on a Raspberry Pi 4. Opening happens once per daemon start, so this is affordable,
#: while it makes each passphrase guess cost the attacker the same memory.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
#: Upper bounds accepted from a header, so a crafted file cannot make us allocate gigabytes.
_SCRYPT_MAX_N = 2**20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16
#: Shortest passphrase accepted when *creating* a gallery (any length opens an existing one).
MIN_PASSPHRASE_CHARS = 8

CREDENTIAL_DEFAULT_NAME = "edgeface-gallery.key"


@dataclass(frozen=True)
class SubKeys:
    """Keys derived from the master key: AES-256-GCM key and the header key-check value."""

    aead_key: bytes
    check: bytes


def derive_subkeys(master: bytes) -> SubKeys:
    """Split the master key with HKDF-SHA256 so each use has its own key."""
    okm = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES + 16, salt=None, info=b"edgeface-gallery v1"
    ).derive(master)
    return SubKeys(aead_key=okm[:KEY_BYTES], check=okm[KEY_BYTES:])


class KeySource(Protocol):
    """Something that yields the master key for a file whose header holds ``kdf``."""

    #: human words for messages: "key file /etc/edgeface/gallery.key", "passphrase", ...
    description: str

    def new_kdf(self) -> dict[str, Any]:
        """KDF parameters for a newly written file (a fresh salt for passphrases)."""
        ...

    def master_key(self, kdf: dict[str, Any], where: str) -> bytes:
        """The master key for a file with header KDF parameters ``kdf`` (``where`` = file)."""
        ...


@dataclass
class RawKey:
    """A 256-bit key held in memory (from a key file, a credential or a test)."""

    key: bytes = field(repr=False)
    description: str = "raw key"

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise KeySourceError(f"{self.description}: key must be {KEY_BYTES} bytes")

    def new_kdf(self) -> dict[str, Any]:
        return {"kind": "raw"}

    def master_key(self, kdf: dict[str, Any], where: str) -> bytes:
        if kdf.get("kind") != "raw":
            raise WrongKeyError(
                f"{where}: this gallery is protected by a passphrase, but a {self.description} "
                "was given (use --passphrase-env / --passphrase-file / --ask-passphrase)"
            )
        return self.key

    @classmethod
    def generate(cls) -> RawKey:
        return cls(secrets.token_bytes(KEY_BYTES), "generated key")


@dataclass
class Passphrase:
    """A passphrase stretched with scrypt; the derived key is cached per (salt, cost)."""

    secret: str = field(repr=False)
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    description: str = "passphrase"
    _cache: dict[tuple[str, int, int, int], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise KeySourceError("empty passphrase")

    def check_strength(self) -> None:
        """Refuse passphrases too short to protect a new gallery."""
        if len(self.secret) < MIN_PASSPHRASE_CHARS:
            raise KeySourceError(
                f"passphrase too short ({len(self.secret)} characters; "
                f"use at least {MIN_PASSPHRASE_CHARS})"
            )

    def new_kdf(self) -> dict[str, Any]:
        salt = base64.b64encode(secrets.token_bytes(SALT_BYTES)).decode("ascii")
        return {"kind": "scrypt", "salt": salt, "n": self.n, "r": self.r, "p": self.p}

    def master_key(self, kdf: dict[str, Any], where: str) -> bytes:
        if kdf.get("kind") != "scrypt":
            raise WrongKeyError(
                f"{where}: this gallery is protected by a key file or credential, "
                "but a passphrase was given (use --key-file or --credential)"
            )
        try:
            salt_b64 = str(kdf["salt"])
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            salt = base64.b64decode(salt_b64, validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise TamperedError(f"{where}: malformed KDF parameters in header") from exc
        if not (
            2 <= n <= _SCRYPT_MAX_N
            and n & (n - 1) == 0
            and 1 <= r <= _SCRYPT_MAX_R
            and 1 <= p <= _SCRYPT_MAX_P
        ):
            raise TamperedError(f"{where}: scrypt parameters out of range (n={n} r={r} p={p})")
        cache_key = (salt_b64, n, r, p)
        if cache_key not in self._cache:
            self._cache[cache_key] = Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(
                self.secret.encode("utf-8")
            )
        return self._cache[cache_key]


def parse_key_material(data: bytes, where: str) -> bytes:
    """Accept 64 hex characters (what we write), base64 of 32 bytes, or 32 raw bytes."""
    text = data.strip()
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        if len(text) == 2 * KEY_BYTES:
            return bytes.fromhex(text.decode("ascii"))
    with contextlib.suppress(binascii.Error, ValueError):
        decoded = base64.b64decode(text, validate=True)
        if len(decoded) == KEY_BYTES:
            return decoded
    if len(data) == KEY_BYTES:
        return data
    raise KeySourceError(
        f"{where}: not a 256-bit key (expected 64 hex characters; "
        "create one with `edgeface gallery init --create-key`)"
    )


def _check_private(path: Path, st: os.stat_result, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeySourceError(f"{path}: {what} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeySourceError(
            f"{path}: {what} is readable or writable by group/others (mode {mode:04o}); "
            f"refusing to use it, run: chmod 600 {path}"
        )


def _read_private_file(p: Path, what: str, hint: str = "") -> bytes:
    """A small private regular file's bytes: refused if group/others can read it, if it is
    not a regular file (a FIFO is never waited on) or a symlink."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise KeySourceError(f"{p}: {what} not found{hint}") from exc
    except OSError as exc:
        raise KeySourceError(f"{p}: cannot open {what} ({exc.strerror or exc})") from exc
    try:
        # fstat on the opened descriptor: no window between the check and the read.
        _check_private(p, os.fstat(fd), what)
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def load_key_file(path: str | os.PathLike[str]) -> RawKey:
    """Read a key file, refusing one that group or others could read."""
    p = Path(path)
    hint = " (create one with `edgeface gallery init --create-key`)"
    return RawKey(
        parse_key_material(_read_private_file(p, "key file", hint), str(p)), f"key file {p}"
    )


def load_passphrase_file(path: str | os.PathLike[str]) -> Passphrase:
    """The first line of a passphrase file, checked like a key file (mode 0600, regular)."""
    p = Path(path)
    data = _read_private_file(p, "passphrase file")
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise KeySourceError(f"{p}: passphrase file is not UTF-8 text") from exc
    return Passphrase(lines[0] if lines else "")


def ask_passphrase(*, confirm: bool) -> Passphrase:
    """Prompt on the terminal; without one, say which option to use instead."""
    import getpass
    import sys

    if not sys.stdin.isatty():
        raise KeySourceError(
            "--ask-passphrase needs a terminal; use --passphrase-file or --passphrase-env"
        )
    first = getpass.getpass("Gallery passphrase: ")
    if confirm and first != getpass.getpass("Repeat passphrase: "):
        raise KeySourceError("the two passphrases differ")
    return Passphrase(first)


def create_key_file(path: str | os.PathLike[str]) -> RawKey:
    """Write a new random key to ``path`` with mode 0600, atomically, never overwriting.

    The key is written to a temporary 0600 file in the same directory, fsynced, then
    hard-linked into place (``link`` fails if the name exists, unlike ``rename``), so a crash
    leaves either no key file or a complete one, and an existing key is never replaced.
    """
    p = Path(path)
    if p.exists():
        raise KeySourceError(f"{p}: key file already exists; refusing to overwrite it")
    key = RawKey.generate()
    directory = p.parent if str(p.parent) else Path(".")
    tmp = directory / f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # umask cannot widen it, but be explicit
            os.write(fd, key.key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, p)
    except FileExistsError as exc:
        raise KeySourceError(f"{p}: key file already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise KeySourceError(f"{p}: cannot create key file ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    from edgeface.gallery.durable import fsync_dir

    fsync_dir(directory)
    return RawKey(key.key, f"key file {p}")


def load_systemd_credential(name: str = CREDENTIAL_DEFAULT_NAME) -> RawKey:
    """Read key material passed by systemd (``LoadCredential[Encrypted]=NAME:...``)."""
    base = os.environ.get("CREDENTIALS_DIRECTORY")
    if not base:
        raise KeySourceError(
            f"systemd credential {name!r}: $CREDENTIALS_DIRECTORY is not set "
            "(not running under systemd with LoadCredential=)"
        )
    if "/" in name or name in ("", ".", ".."):
        raise KeySourceError(f"systemd credential {name!r}: invalid name")
    p = Path(base) / name
    try:
        st = os.stat(p)
    except FileNotFoundError as exc:
        raise KeySourceError(f"{p}: systemd credential {name!r} not found") from exc
    _check_private(p, st, "credential")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise KeySourceError(f"{p}: cannot read credential ({exc.strerror or exc})") from exc
    return RawKey(parse_key_material(data, str(p)), f"systemd credential {name}")
