"""The operator PIN and the one-time invitation codes, kept hashed in the kiosk's state directory.

Both are short digit strings typed on a touch-screen pad, so their hashes are scrypt (memory
hard, per-item salt): a copied ``pin.json`` does not give the PIN away in seconds. Online
guessing is bounded separately, by the lockout in :mod:`edgeface.kiosk.app`.

Invitations (``edgeface kiosk invite "Ada Lovelace"``) are written by the CLI while the kiosk
runs, so every read-modify-write of ``invites.json`` holds the gallery's writer-lock helper on
that file, and every write is the gallery's atomic replace: a redeemed code is gone for good
even if the power fails right after, and two processes never lose each other's changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError, StorageError
from edgeface.gallery.durable import WriterLock
from edgeface.storage import atomic_write

#: scrypt cost: 16 MiB and ~50 ms per check on a Pi 4-class CPU; the kiosk checks one PIN per
#: tap of "OK", so this is affordable and makes offline guessing of a leaked file slow
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
INVITE_DIGITS = 10
MAX_INVITES = 100


def _scrypt(secret: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P):
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_secret(secret: str) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    return {
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "hash": _scrypt(secret, salt).hex(),
    }


def check_secret(secret: str, record: dict[str, Any]) -> bool:
    try:
        digest = _scrypt(
            secret,
            bytes.fromhex(record["salt"]),
            int(record["n"]),
            int(record["r"]),
            int(record["p"]),
        )
        return hmac.compare_digest(digest.hex(), str(record["hash"]))
    except (KeyError, TypeError, ValueError):
        return False


def digits_only(value: str, lo: int, hi: int, what: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} must be digits only")
    if not lo <= len(value) <= hi:
        raise ValueError(f"{what} must have {lo}..{hi} digits")
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path}: unreadable ({exc})") from exc


def _write_json(path: Path, obj: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StorageError(f"{path.parent}: cannot create ({exc.strerror})") from exc
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode(), what="kiosk state")


class PinStore:
    """``pin.json``: the operator PIN's scrypt hash."""

    def __init__(self, state_dir: Path, *, min_digits: int = 6) -> None:
        self.path = Path(state_dir) / "pin.json"
        self.min_digits = min_digits

    @property
    def is_set(self) -> bool:
        return self.path.is_file()

    def set(self, pin: str) -> None:
        try:
            digits_only(pin, self.min_digits, 12, "PIN")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        _write_json(self.path, hash_secret(pin))

    def check(self, pin: str) -> bool:
        record = _read_json(self.path)
        if not isinstance(record, dict) or not isinstance(pin, str) or len(pin) > 12:
            return False
        return check_secret(pin, record)


@dataclass(frozen=True)
class Invitation:
    name: str
    created: float
    expires: float


class InviteStore:
    """``invites.json``: pending invitations (hashed code, display name, expiry)."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / "invites.json"
        self.clock = clock

    def _load(self) -> list[dict[str, Any]]:
        data = _read_json(self.path)
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def create(self, name: str, valid_s: float) -> str:
        """A fresh code for ``name``; only its hash is stored. Returns the code (shown once)."""
        from edgeface.gallery.store import _clean_name

        name = _clean_name(name)
        if not valid_s > 0:
            raise ConfigError("an invitation must be valid for a positive time")
        code = "".join(str(secrets.randbelow(10)) for _ in range(INVITE_DIGITS))
        now = self.clock()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with WriterLock(self.path, 10.0):
            items = [d for d in self._load() if float(d.get("expires", 0)) > now]
            if len(items) >= MAX_INVITES:
                raise StorageError(
                    f"{self.path}: {MAX_INVITES} invitations pending; wait or redeem"
                )
            items.append(
                {"name": name, "created": now, "expires": now + valid_s, **hash_secret(code)}
            )
            _write_json(self.path, items)
        return code

    def pending(self) -> list[Invitation]:
        now = self.clock()
        return [
            Invitation(str(d["name"]), float(d["created"]), float(d["expires"]))
            for d in self._load()
            if float(d.get("expires", 0)) > now
        ]

    def redeem(self, code: str) -> Invitation | None:
        """The invitation ``code`` opens, removed from the file (single use); None if the code
        is wrong or expired. Expired entries are dropped on the way."""
        if not isinstance(code, str) or len(code) != INVITE_DIGITS or not code.isdigit():
            return None
        if not self.path.exists():
            return None
        with WriterLock(self.path, 10.0):
            now = self.clock()
            items = self._load()
            alive = [d for d in items if float(d.get("expires", 0)) > now]
            found = next((d for d in alive if check_secret(code, d)), None)
            if found is not None:
                alive.remove(found)
            if found is not None or len(alive) != len(items):
                _write_json(self.path, alive)
        if found is None:
            return None
        return Invitation(str(found["name"]), float(found["created"]), float(found["expires"]))


def ensure_private_dir(path: Path) -> None:
    """Create the state directory (0700)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StorageError(
            f"{path}: cannot create the kiosk state directory ({exc.strerror})"
        ) from exc
    if not os.access(path, os.W_OK):
        raise StorageError(f"{path}: the kiosk state directory is not writable")
