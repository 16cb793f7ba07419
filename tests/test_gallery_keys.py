"""Key sources: key file permissions, creation, malformed keys, systemd credentials."""

from __future__ import annotations

import os
import stat

import pytest

from edgeface.gallery import (
    GalleryFile,
    KeySourceError,
    Passphrase,
    create_key_file,
    load_key_file,
    load_systemd_credential,
)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_key_file_created_0600_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        create_key_file(tmp_path / "k.key")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.key") == 0o600
    text = (tmp_path / "k.key").read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temp file left


def test_key_file_never_overwritten(tmp_path):
    k1 = create_key_file(tmp_path / "k.key")
    with pytest.raises(KeySourceError, match="already exists"):
        create_key_file(tmp_path / "k.key")
    assert load_key_file(tmp_path / "k.key").key == k1.key


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o620])
def test_group_or_world_accessible_key_file_refused(tmp_path, bad_mode):
    create_key_file(tmp_path / "k.key")
    os.chmod(tmp_path / "k.key", bad_mode)
    with pytest.raises(KeySourceError, match="chmod 600") as ei:
        load_key_file(tmp_path / "k.key")
    assert str(tmp_path / "k.key") in str(ei.value)


def test_owner_only_modes_accepted(tmp_path):
    create_key_file(tmp_path / "k.key")
    os.chmod(tmp_path / "k.key", 0o400)
    assert len(load_key_file(tmp_path / "k.key").key) == 32


def test_missing_and_malformed_key_files(tmp_path):
    with pytest.raises(KeySourceError, match="not found"):
        load_key_file(tmp_path / "missing.key")
    bad = tmp_path / "bad.key"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key\n")
    os.close(fd)
    with pytest.raises(KeySourceError, match="not a 256-bit key"):
        load_key_file(bad)
    with pytest.raises(KeySourceError, match="not a regular file"):
        os.mkdir(tmp_path / "dir.key", 0o700)
        load_key_file(tmp_path / "dir.key")


def test_symlinked_key_file_refused(tmp_path):
    create_key_file(tmp_path / "k.key")
    os.symlink(tmp_path / "k.key", tmp_path / "link.key")
    with pytest.raises(KeySourceError):
        load_key_file(tmp_path / "link.key")


def test_systemd_credential(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    key = create_key_file(creds / "edgeface-gallery.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cred = load_systemd_credential()
    assert cred.key == key.key and "systemd credential" in cred.description
    # a gallery written with the key file opens with the credential: same key material
    gf = GalleryFile(tmp_path / "g.efg", load_key_file(creds / "edgeface-gallery.key"))
    gf.create()
    assert len(GalleryFile(tmp_path / "g.efg", cred).load()) == 0
    with pytest.raises(KeySourceError, match="not found"):
        load_systemd_credential("other-name")
    with pytest.raises(KeySourceError, match="invalid name"):
        load_systemd_credential("../etc/passwd")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(KeySourceError, match="CREDENTIALS_DIRECTORY"):
        load_systemd_credential()


def test_passphrase_rules():
    with pytest.raises(KeySourceError, match="empty"):
        Passphrase("")
    with pytest.raises(KeySourceError, match="too short"):
        Passphrase("short").check_strength()
    Passphrase("long enough passphrase").check_strength()
    assert "long enough" not in repr(Passphrase("long enough passphrase"))


def test_resolve_key_takes_exactly_one_source(tmp_path, monkeypatch):
    from edgeface.errors import ConfigError
    from edgeface.gallery.keysource import KeyChoice, resolve_key

    monkeypatch.delenv("EDGEFACE_GALLERY_KEY_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("PHRASE", "correct horse battery staple 42")
    key = tmp_path / "k"
    with pytest.raises(ConfigError, match="only one key source"):
        resolve_key(KeyChoice(key_file=str(key), passphrase_env="PHRASE"))
    assert resolve_key(KeyChoice(), fallback=False) is None
    with pytest.raises(KeySourceError, match="no gallery key given"):
        resolve_key(KeyChoice())
    created = []
    src = resolve_key(
        KeyChoice(key_file=str(key)), new=True, create_key=True, on_created=created.append
    )
    assert created == [key] and src is not None and (key.stat().st_mode & 0o777) == 0o600
    assert resolve_key(KeyChoice(passphrase_env="PHRASE")) is not None


def test_configured_key_is_the_services_rule(tmp_path, monkeypatch):
    """door / kiosk: key_file or key_credential from the config, never the environment."""
    from edgeface.errors import ConfigError
    from edgeface.gallery.keysource import configured_key

    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    key = create_key_file(creds / "edgeface-gallery.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("EDGEFACE_GALLERY_KEY_FILE", str(creds / "edgeface-gallery.key"))
    assert configured_key(creds / "edgeface-gallery.key", None).key == key.key
    assert configured_key(None, "edgeface-gallery.key").key == key.key
    with pytest.raises(ConfigError, match="set key_credential"):
        configured_key(None, None)  # the environment fallbacks are the CLI's only
    with pytest.raises(ConfigError, match="not both"):
        configured_key(creds / "edgeface-gallery.key", "edgeface-gallery.key")
    with pytest.raises(KeySourceError):
        configured_key(tmp_path / "missing.key", None)
