"""Choosing the gallery key from what the user gave: one of a key file, a passphrase (from an
environment variable, a file or the terminal) or a systemd credential, else the defaults.

The same rules serve the CLI, the door and the kiosk: exactly one source, passphrases for a
file about to be written are asked twice and must be strong, a key file is created only when
asked, and without any option ``$EDGEFACE_GALLERY_KEY_FILE`` then the systemd credential
``edgeface-gallery.key`` (when ``$CREDENTIALS_DIRECTORY`` has it) are used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.gallery.errors import KeySourceError
from edgeface.gallery.keys import (
    CREDENTIAL_DEFAULT_NAME,
    KeySource,
    Passphrase,
    ask_passphrase,
    create_key_file,
    load_key_file,
    load_passphrase_file,
    load_systemd_credential,
)


def default_gallery_path() -> Path:
    """``$EDGEFACE_GALLERY``, else ``$XDG_DATA_HOME/edgeface/gallery.efg``."""
    env = os.environ.get("EDGEFACE_GALLERY")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "edgeface" / "gallery.efg"


@dataclass(frozen=True)
class KeyChoice:
    """The key options as given (all empty = use the defaults)."""

    key_file: str | None = None
    passphrase_env: str | None = None
    passphrase_file: str | None = None
    ask_passphrase: bool = False
    credential: str | None = None

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


def resolve_key(
    choice: KeyChoice,
    *,
    new: bool = False,
    create_key: bool = False,
    fallback: bool = True,
    flag_prefix: str = "",
    on_created: Callable[[Path], None] | None = None,
) -> KeySource | None:
    """The key source ``choice`` names; None when it names none and ``fallback`` is off.

    ``new``: the key protects a file about to be written (init, rekey, export): passphrases
    are asked twice and must be strong, and ``create_key`` may create a missing key file
    (``on_created`` is then told, e.g. to remind the user to keep a copy).
    """
    given = choice.given()
    if len(given) > 1:
        flags = ", ".join("--" + (flag_prefix + n).replace("_", "-") for n in given)
        raise ConfigError(f"give only one key source ({flags})")
    source: KeySource | None = None
    if choice.key_file:
        path = Path(choice.key_file)
        if new and create_key and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            source = create_key_file(path)
            if on_created is not None:
                on_created(path)
        else:
            source = load_key_file(path)
    elif choice.passphrase_env:
        var = choice.passphrase_env
        if var not in os.environ:
            raise KeySourceError(f"environment variable {var} is not set")
        source = Passphrase(os.environ[var])
    elif choice.passphrase_file:
        source = load_passphrase_file(choice.passphrase_file)
    elif choice.ask_passphrase:
        source = ask_passphrase(confirm=new)
    elif choice.credential:
        source = load_systemd_credential(choice.credential)
    elif fallback:
        source = _default_key()
    if new and isinstance(source, Passphrase):
        source.check_strength()
    return source


def _default_key() -> KeySource:
    env_key = os.environ.get("EDGEFACE_GALLERY_KEY_FILE")
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if env_key:
        return load_key_file(env_key)
    if creds and (Path(creds) / CREDENTIAL_DEFAULT_NAME).exists():
        return load_systemd_credential(CREDENTIAL_DEFAULT_NAME)
    raise KeySourceError(
        "no gallery key given: use --key-file, --passphrase-env, --passphrase-file, "
        "--ask-passphrase or --credential (or set EDGEFACE_GALLERY_KEY_FILE)"
    )


def configured_key(key_file: str | os.PathLike[str] | None, credential: str | None) -> KeySource:
    """The key source of a config file's ``key_file`` / ``key_credential`` pair (door,
    kiosk): the rules are :func:`resolve_key`'s without the environment fallbacks, since a
    service must open the gallery its configuration names and nothing else."""
    if key_file and credential:  # as the config parser says
        raise ConfigError("gallery.key_file: give key_file or key_credential, not both")
    choice = KeyChoice(key_file=os.fspath(key_file) if key_file else None, credential=credential)
    source = resolve_key(choice, fallback=False)
    if source is None:
        raise ConfigError("gallery.key_credential: set key_credential (systemd) or key_file")
    return source
