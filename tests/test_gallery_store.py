"""Gallery model and 1:N matching, on synthetic unit vectors (no models needed here; the
real-face enrollment and identification tests are in test_gallery_faces.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeface.gallery import (
    Gallery,
    GalleryError,
    GalleryExistsError,
    GalleryFile,
    GalleryNotFoundError,
    IdentityNotFoundError,
    Matcher,
    ModelMismatchError,
    ModelRef,
    RawKey,
    Template,
)

MODEL = ModelRef("mobilefacenet", "a" * 64)
OTHER = ModelRef("mobilefacenet-int8", "b" * 64)


def unit(rng: np.random.Generator, n: int = 1, dim: int = 128) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def templates(rng, n, model=MODEL, qualities=None):
    q = qualities if qualities is not None else rng.random(n)
    return [Template(e, float(qq), model) for e, qq in zip(unit(rng, n), q, strict=True)]


@pytest.fixture
def gfile(tmp_path):
    gf = GalleryFile(tmp_path / "gallery.efg", RawKey.generate())
    gf.create()
    return gf


def test_roundtrip_keeps_everything(gfile):
    rng = np.random.default_rng(0)
    with gfile.edit() as g:
        alice = g.add_identity("Alice", templates(rng, 3))
        bob = g.add_identity("Bob Ørsted", templates(rng, 1))
    loaded = gfile.load()
    assert loaded.fingerprint() == g.fingerprint()
    assert loaded.generation == 2  # create + one edit
    assert [i.name for i in loaded.identities()] == ["Alice", "Bob Ørsted"]
    assert loaded.info(alice.id).n_templates == 3
    assert loaded.model == MODEL
    ta = loaded.templates(alice.id)
    assert all(t.model == MODEL for t in ta)
    assert all(abs(np.linalg.norm(t.embedding) - 1) < 1e-5 for t in ta)
    assert [t.quality for t in ta] == sorted((t.quality for t in ta), reverse=True)
    assert loaded.find("bob ørsted").id == bob.id


def test_ids_are_stable_uuid4_and_times_set(gfile):
    rng = np.random.default_rng(1)
    with gfile.edit() as g:
        info = g.add_identity("Carol", templates(rng, 2))
    with gfile.edit() as g:
        g.add_identity("Dave", templates(rng, 1))
    again = gfile.load().find("Carol")
    assert again.id == info.id and len(info.id) == 36 and info.id[14] == "4"
    assert again.created == pytest.approx(info.created)
    assert again.updated >= again.created


def test_keeps_best_n_templates(tmp_path):
    rng = np.random.default_rng(2)
    g = Gallery(max_templates=3)
    info = g.add_identity("Erin", templates(rng, 5, qualities=[0.1, 0.9, 0.5, 0.7, 0.3]))
    assert info.n_templates == 3
    assert [round(t.quality, 2) for t in g.templates(info.id)] == [0.9, 0.7, 0.5]
    g.add_templates(info.id, templates(rng, 2, qualities=[0.8, 0.2]))
    assert [round(t.quality, 2) for t in g.templates(info.id)] == [0.9, 0.8, 0.7]
    assert g.info(info.id).created == info.created


def test_remove_really_removes_from_file_and_backup(gfile):
    rng = np.random.default_rng(3)
    with gfile.edit() as g:
        frank = g.add_identity("Frank", templates(rng, 2))
        g.add_identity("Grace", templates(rng, 2))
    with gfile.edit(purge_backup=True) as g:
        g.remove(g.find("Frank").id)
    for loaded in (gfile.load(), gfile.load_backup()):
        assert [i.name for i in loaded.identities()] == ["Grace"]
        assert loaded.n_templates == 2
        with pytest.raises(IdentityNotFoundError):
            loaded.info(frank.id)


def test_names_lookup_errors(gfile):
    rng = np.random.default_rng(4)
    g = gfile.load()
    g.add_identity("Heidi", templates(rng, 1))
    g.add_identity("Heidi", templates(rng, 1))
    with pytest.raises(IdentityNotFoundError, match="2 identities are named"):
        g.find("heidi")
    with pytest.raises(IdentityNotFoundError, match="nobody named"):
        g.find("Ivan")
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(GalleryError):
            g.add_identity(bad, templates(rng, 1))


def test_bad_embeddings_rejected():
    g = Gallery()
    with pytest.raises(GalleryError, match="at least one template"):
        g.add_identity("J", [])
    with pytest.raises(GalleryError, match="zero length"):
        g.add_identity("J", [Template(np.zeros(64, np.float32), 1.0, MODEL)])
    assert g.dim == 128  # a rejected template does not change the size
    g.add_identity("I", [Template(np.ones(128, np.float32), 1.0, MODEL)])
    with pytest.raises(GalleryError, match="expects 128"):  # the first template fixed the size
        g.add_identity("J", [Template(np.ones(64, np.float32), 1.0, MODEL)])
    with pytest.raises(GalleryError, match="zero length"):
        g.add_identity("J", [Template(np.zeros(128, np.float32), 1.0, MODEL)])
    with pytest.raises(GalleryError, match="not finite"):
        g.add_identity("J", [Template(np.full(128, np.nan, np.float32), 1.0, MODEL)])
    assert len(g) == 1


def test_model_binding(gfile):
    rng = np.random.default_rng(5)
    with gfile.edit() as g:
        g.add_identity("Kim", templates(rng, 1, model=MODEL))
    loaded = gfile.load()
    assert gfile.header()["model"] == {"id": MODEL.id, "sha256": MODEL.sha256}
    with pytest.raises(ModelMismatchError, match="re-enroll") as ei:
        loaded.identify(unit(rng)[0], 0.5, model=OTHER)
    assert str(gfile.path) in str(ei.value)
    with pytest.raises(ModelMismatchError):
        loaded.add_identity("Lee", templates(rng, 1, model=OTHER))
    # same model: fine
    assert loaded.identify(unit(rng)[0], 0.5, model=MODEL).label in ("unknown", "Kim")


def test_create_refuses_overwrite_and_missing_is_an_error(tmp_path, gfile):
    with pytest.raises(GalleryExistsError):
        gfile.create()
    with pytest.raises(GalleryNotFoundError, match=r"nope\.efg"):
        GalleryFile(tmp_path / "nope.efg", RawKey.generate()).load()


def test_merge_import(tmp_path):
    rng = np.random.default_rng(6)
    a, b = Gallery(), Gallery()
    shared = a.add_identity("Mia", templates(rng, 1))
    b.add_identity(
        "Mia",
        a.templates(shared.id),
        identity_id=shared.id,
        created=shared.created,
        updated=shared.updated + 10,
    )
    b.add_identity("Noah", templates(rng, 2))
    a.add_identity("Olga", templates(rng, 1))
    stats = a.merge(b)
    assert stats == {"added": 1, "updated": 1, "skipped": 0}
    assert sorted(i.name for i in a.identities()) == ["Mia", "Noah", "Olga"]
    assert a.merge(b) == {"added": 0, "updated": 0, "skipped": 2}
    c = Gallery(model=OTHER)
    with pytest.raises(ModelMismatchError):
        a.merge(c)


def brute_force(emb, counts, probes):
    s = probes @ emb.T
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.maximum.reduceat(s, starts, axis=1)


def test_matcher_equals_brute_force_with_uneven_template_counts():
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 6, size=300)
    emb = unit(rng, int(counts.sum()))
    ids = [f"id{i}" for i in range(300)]
    m = Matcher(emb, counts, ids, [f"n{i}" for i in range(300)])
    probes = unit(rng, 50)
    ref = brute_force(emb, counts, probes)
    col = [int(i[2:]) for i in m.ids]
    np.testing.assert_allclose(m.scores(probes), ref[:, col], atol=1e-5)
    # top-k is sorted and agrees with the reference ranking
    for p, row in zip(probes, ref, strict=True):
        top = m.search(p, k=5)
        assert [t.identity_id for t in top] == [f"id{i}" for i in np.argsort(-row)[:5]]
        assert all(a.score >= b.score for a, b in itertools.pairwise(top))


def test_open_set_decision():
    rng = np.random.default_rng(8)
    g = Gallery()
    people = {f"p{i}": unit(rng, 3) for i in range(200)}
    for name, e in people.items():
        g.add_identity(name, [Template(v, 1.0, MODEL) for v in e])
    probe = people["p42"][1] + 0.05 * unit(rng)[0]
    d = g.identify(probe, threshold=0.5, k=3)
    assert d.known and d.label == "p42" and len(d.candidates) == 3
    assert d.to_dict()["label"] == "p42"
    stranger = g.identify(unit(rng)[0], threshold=0.5)
    assert not stranger.known and stranger.label == "unknown" and stranger.best is not None
    # boundary: a score exactly at the threshold is accepted
    s = g.search(people["p7"][0], k=1)[0].score
    assert g.identify(people["p7"][0], threshold=s).label == "p7"
    assert g.identify(people["p7"][0], threshold=np.nextafter(s, 2.0)).label == "unknown"


def test_empty_gallery_is_unknown_not_an_error():
    d = Gallery().identify(np.ones(128, np.float32), threshold=0.3)
    assert d.label == "unknown" and d.candidates == []


def test_matcher_rebuilt_after_change():
    rng = np.random.default_rng(9)
    g = Gallery()
    e = unit(rng, 2)
    g.add_identity("Quinn", [Template(e[0], 1.0, MODEL)])
    assert g.identify(e[1], 0.9).label == "unknown"
    g.add_identity("Ruth", [Template(e[1], 1.0, MODEL)])
    assert g.identify(e[1], 0.9).label == "Ruth"
    g.remove(g.find("Ruth").id)
    assert g.identify(e[1], 0.9).label == "unknown"


def test_identity_rows_are_named_and_stored_as_plain_lists():
    """Rows are IdentityRow records in memory (issue 14) but the payload and the fingerprint
    still see ``[id, name, created, updated, n_templates]``, so files and digests do not move."""
    import hashlib
    import json

    from edgeface.gallery import payload
    from edgeface.gallery.payload import IdentityRow

    rng = np.random.default_rng(3)
    g = Gallery(model=MODEL)
    info = g.add_identity("Ada", templates(rng, 2), created=1.0, updated=2.0)
    data = g.to_payload()
    meta_len = int.from_bytes(data[4:8], "little")
    stored = json.loads(data[8 : 8 + meta_len])["identities"]
    assert stored == [[info.id, "Ada", 1.0, 2.0, 2]]
    cols = payload.decode(data, "test")
    assert cols.identities == [IdentityRow(info.id, "Ada", 1.0, 2.0, 2)]
    created, emb, quality, model = g._columns()
    h = hashlib.sha256(repr([stored, [m.__dict__ for m in g._models]]).encode())
    for a in (created, emb, quality, model):
        h.update(np.ascontiguousarray(a).tobytes())
    assert g.fingerprint() == h.hexdigest()
