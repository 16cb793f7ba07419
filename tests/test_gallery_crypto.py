"""Encryption at rest: wrong keys, every tampered byte, truncation. Each failure must be a
typed error naming the file, never an empty gallery."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from edgeface.gallery import (
    GalleryError,
    GalleryFile,
    ModelRef,
    Passphrase,
    RawKey,
    TamperedError,
    Template,
    WrongKeyError,
    create_key_file,
    load_key_file,
)
from edgeface.gallery import format as fmt

MODEL = ModelRef("mobilefacenet", "c" * 64)
# Cheap scrypt for tests (the default N=2^15 is for real galleries); the parameters are stored
# in the header, so opening works the same.
FAST = {"n": 2**10, "r": 8, "p": 1}


def _fill(gf: GalleryFile, n: int = 20) -> None:
    rng = np.random.default_rng(0)
    with gf.edit() as g:
        for i in range(n):
            e = rng.standard_normal((2, 128)).astype(np.float32)
            g.add_identity(f"Person {i}", [Template(v, 0.5, MODEL) for v in e])


@pytest.fixture
def keyed(tmp_path):
    key = create_key_file(tmp_path / "gallery.key")
    gf = GalleryFile(tmp_path / "gallery.efg", load_key_file(tmp_path / "gallery.key"))
    gf.create()
    _fill(gf)
    return gf, key


def test_wrong_key_file(keyed, tmp_path):
    gf, _ = keyed
    other = create_key_file(tmp_path / "other.key")
    with pytest.raises(WrongKeyError, match="wrong key") as ei:
        GalleryFile(gf.path, other).load()
    assert str(gf.path) in str(ei.value)


def test_wrong_passphrase(tmp_path):
    gf = GalleryFile(tmp_path / "p.efg", Passphrase("correct horse battery", **FAST))
    gf.create()
    _fill(gf, 3)
    assert len(GalleryFile(gf.path, Passphrase("correct horse battery")).load()) == 3
    with pytest.raises(WrongKeyError, match="wrong key") as ei:
        GalleryFile(gf.path, Passphrase("correct horse battery!")).load()
    assert str(gf.path) in str(ei.value)
    # a key file on a passphrase gallery, and the reverse, get a message saying so
    with pytest.raises(WrongKeyError, match="protected by a passphrase"):
        GalleryFile(gf.path, RawKey.generate()).load()


def test_passphrase_on_key_file_gallery(keyed):
    gf, _ = keyed
    with pytest.raises(WrongKeyError, match="key file or credential"):
        GalleryFile(gf.path, Passphrase("whatever123")).load()


def test_passphrase_kdf_params_in_header(tmp_path):
    gf = GalleryFile(tmp_path / "p.efg", Passphrase("a long passphrase", **FAST))
    gf.create()
    kdf = gf.header()["kdf"]
    assert kdf["kind"] == "scrypt" and kdf["n"] == FAST["n"] and len(kdf["salt"]) >= 16


def test_header_readable_without_key_but_reveals_no_people(keyed):
    gf, _ = keyed
    header = gf.header()
    assert header["model"]["id"] == MODEL.id
    raw = gf.path.read_bytes()
    assert b"Person" not in raw
    assert "count" not in header and "identities" not in header


def test_fresh_nonce_every_write(keyed):
    gf, _ = keyed
    first = gf.path.read_bytes()
    with gf.edit() as g:
        g.rename(g.find("Person 1").id, "Person 1")  # same content, new write
    second = gf.path.read_bytes()
    r1, r2 = fmt.regions(first), fmt.regions(second)
    assert first[slice(*r1.nonce)] != second[slice(*r2.nonce)]
    assert first[slice(*r1.ciphertext)] != second[slice(*r2.ciphertext)]


REGIONS = [f.name for f in dataclasses.fields(fmt.Regions)]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_every_flipped_byte_is_detected(keyed, region, where):
    gf, _ = keyed
    data = bytearray(gf.path.read_bytes())
    a, b = getattr(fmt.regions(bytes(data)), region)
    pos = {"first": a, "middle": (a + b) // 2, "last": b - 1}[where]
    data[pos] ^= 0x01
    gf.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError) as ei:
        gf.load()
    assert str(gf.path) in str(ei.value)
    # a flipped bit never reads as another valid gallery (or as an empty one)
    assert isinstance(ei.value, (TamperedError, WrongKeyError)) or "version" in str(ei.value)


def test_random_flips_all_detected(keyed):
    """Beyond the region edges: 200 random positions, each one bit."""
    gf, _ = keyed
    orig = gf.path.read_bytes()
    rng = np.random.default_rng(11)
    for pos in rng.integers(0, len(orig), size=200):
        data = bytearray(orig)
        data[pos] ^= 1 << int(rng.integers(0, 8))
        gf.path.write_bytes(bytes(data))
        with pytest.raises(GalleryError):
            gf.load()
    gf.path.write_bytes(orig)
    assert len(gf.load()) == 20


def test_truncation_detected(keyed):
    gf, _ = keyed
    orig = gf.path.read_bytes()
    reg = fmt.regions(orig)
    cuts = [
        0,
        1,
        7,
        12,
        reg.header[0] + 3,
        reg.nonce[0],
        reg.nonce[1] + 5,
        (reg.ciphertext[0] + reg.ciphertext[1]) // 2,
        len(orig) - 16,
        len(orig) - 1,
    ]
    for cut in cuts:
        gf.path.write_bytes(orig[:cut])
        with pytest.raises(TamperedError) as ei:
            gf.load()
        assert str(gf.path) in str(ei.value)


def test_appended_bytes_detected(keyed):
    gf, _ = keyed
    gf.path.write_bytes(gf.path.read_bytes() + b"\0")
    with pytest.raises(TamperedError):
        gf.load()


def test_not_a_gallery(tmp_path):
    p = tmp_path / "photo.efg"
    p.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(500))
    with pytest.raises(TamperedError, match="not an edgeface gallery"):
        GalleryFile(p, RawKey.generate()).load()


def test_crafted_scrypt_cost_refused(tmp_path):
    """A header asking for 2^30 scrypt work must not make the device allocate gigabytes."""
    import json
    import struct

    gf = GalleryFile(tmp_path / "p.efg", Passphrase("a long passphrase", **FAST))
    gf.create()
    data = gf.path.read_bytes()
    reg = fmt.regions(data)
    header = json.loads(data[slice(*reg.header)])
    header["kdf"]["n"] = 2**30
    hdr = json.dumps(header).encode()
    gf.path.write_bytes(data[:10] + struct.pack("<I", len(hdr)) + hdr + data[reg.nonce[0] :])
    with pytest.raises(TamperedError, match="out of range"):
        GalleryFile(gf.path, Passphrase("a long passphrase")).load()


def test_backup_opens_after_tampering_main(keyed):
    gf, _ = keyed
    before = gf.load().fingerprint()
    with gf.edit() as g:
        g.add_identity("Late", [Template(np.ones(128, np.float32), 0.5, MODEL)])
    data = bytearray(gf.path.read_bytes())
    data[-1] ^= 0xFF
    gf.path.write_bytes(bytes(data))
    with pytest.raises(TamperedError, match=r"\.bak"):
        gf.load()
    assert gf.load_backup().fingerprint() == before
