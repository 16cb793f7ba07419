"""Gallery migration float -> INT8 embedder with real LFW faces, alone and inside
``bundle install``; rollback; the refusal without kept crops; old gallery files still open.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bundle_support import device, float_bundle, int8_embedder, make_keys

from edgeface.bundle.build import BuildSpec, build
from edgeface.bundle.errors import BundleError
from edgeface.cli.main import main
from edgeface.detector import DetectorConfig
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.gallery import GalleryFile, ModelRef, create_key_file, load_key_file
from edgeface.gallery.enroll import Enroller
from edgeface.gallery.quality import QualityGates
from edgeface.imaging import load_image
from edgeface.modelstore import sha256_file
from edgeface.recognition import FacePipeline, PipelineConfig
from edgeface.recognition.calibration import Calibration, calibration_beside

FIXTURES = Path(__file__).parent / "fixtures"
PEOPLE = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path, lfw_people):
    """Keys, the INT8 MobileFaceNet with a calibration of its own, float and INT8 MobileFaceNet
    bundles, and a crop-keeping gallery of 16 LFW people enrolled with the float MobileFaceNet
    (the float bundle's embedder; the default embedder is another model)."""
    d = tmp_path_factory.mktemp("migrate")
    pipeline = FacePipeline.from_config(
        PipelineConfig(
            detector=DetectorConfig(workers=1), embedder=EmbedderConfig(model="mobilefacenet-dyn")
        )
    )
    env_cache = os.environ.get("EDGEFACE_TEST_CACHE")
    cache = Path(env_cache) / "17" if env_cache else d / "cache"
    int8_src = int8_embedder(cache, lfw_dir)
    int8 = d / "mobilefacenet-int8.onnx"
    shutil.copyfile(int8_src, int8)
    # the INT8 file's own calibration, from impostor pairs of 150 real LFW faces
    names = sorted(lfw_people)
    enrolled, probes = names[:PEOPLE], {}
    cal_faces = []
    for person in sorted((lfw_dir / "images").iterdir())[::40][:150]:
        r = pipeline.best_face(load_image(sorted(person.glob("*.jpg"))[0]))
        if r is not None:
            cal_faces.append(r.crop)
    e8 = Embedder.from_config(EmbedderConfig(model="mobilefacenet-dyn", path=str(int8)))
    emb = e8.embed(np.stack(cal_faces))
    iu = np.triu_indices(len(emb), 1)
    Calibration.from_scores(
        (emb @ emb.T)[iu], embedding_space=e8.model_id, model_sha256=e8.model_sha256, flip=True,
        source={"dataset": f"{len(emb)} LFW faces (test)"},
    ).save(calibration_beside(int8))  # fmt: skip
    private, trusted = make_keys(d)
    b1 = float_bundle(d / "float.efb", private, 1)
    b2 = d / "int8.efb"
    spec = BuildSpec(
        name="door-int8",
        version=2,
        embedder=int8,
        calibration=calibration_beside(int8),
        embedder_model="mobilefacenet-dyn",
    )
    build(spec, private, b2)
    key_path = d / "gallery.key"
    key = create_key_file(key_path)
    gallery = d / "gallery.efg"
    gf = GalleryFile(gallery, key)
    gf.create(model=ModelRef.of(pipeline.embedder), keep_crops=True)
    enroller = Enroller(pipeline, gates=QualityGates(min_face_size=40), take_largest=True)
    with gf.edit() as g:
        for name in enrolled:
            plan = enroller.from_files(name, lfw_people[name][:2])
            assert plan.templates, name
            g.add_identity(name, plan.templates)
            probes[name] = lfw_people[name][2:4]
    return SimpleNamespace(
        d=d, int8=int8, b1=b1, b2=b2, private=private, trusted=trusted, key_path=key_path,
        gallery=gallery, probes=probes, pipeline=pipeline,
    )  # fmt: skip


def _recognized(w: SimpleNamespace, gallery_path: Path, embedder_path: Path | None) -> set:
    """(person, probe) pairs identified as that person, with the embedder's own threshold
    (for a release: the runtime's own lookup finds the calibration installed beside it)."""
    g = GalleryFile(gallery_path, load_key_file(w.key_path)).load()
    if embedder_path is None:
        p = w.pipeline
    else:
        cfg = PipelineConfig(
            detector=DetectorConfig(workers=1),
            embedder=EmbedderConfig(model="mobilefacenet-dyn", path=str(embedder_path)),
        )
        p = FacePipeline.from_config(cfg)
    g.check_model(ModelRef.of(p.embedder))
    thr = p.threshold(1e-3)
    hits = set()
    for person, files in w.probes.items():
        for f in files:
            r = p.best_face(load_image(f))
            if r is None:
                continue
            d = g.identify(r.embedding, thr, k=1)
            if d.known and d.best is not None and d.best.name == person:
                hits.add((person, f.name))
    return hits


@pytest.mark.slow
def test_install_migrates_and_rollback_restores(world: SimpleNamespace, tmp_path: Path) -> None:
    w = world
    before = _recognized(w, w.gallery, None)
    assert len(before) >= 0.9 * 2 * PEOPLE  # the float pipeline recognizes nearly all probes
    root = tmp_path / "dev"
    # the real health check: door --check reads the gallery through current/
    door = tmp_path / "door.toml"
    door.write_text(
        f'[camera]\nkind = "images"\npath = "{tmp_path}"\n[actuator]\nkind = "dryrun"\n'
        f'[audit]\npath = "{tmp_path / "audit" / "door.jsonl"}"\n'
        f'[recognition]\nembedder_path = "{root / "current/models/embedder.onnx"}"\n'
        f'embedder_model = "mobilefacenet-dyn"\nmodels = ["mtcnn"]\n'
        f'[gallery]\npath = "{root / "current/gallery.efg"}"\nkey_file = "{w.key_path}"\n'
    )
    check = [sys.executable, "-m", "edgeface.cli.main", "door", "--check", "--no-camera",
             "--config", str(door)]  # fmt: skip
    dev = device(root, w.trusted, health_command=check)
    dev.install(w.b1, import_gallery=w.gallery)
    old = GalleryFile(root / "current/gallery.efg", load_key_file(w.key_path)).load()
    # another embedder, but no key: refused, nothing switched
    with pytest.raises(BundleError, match="give the gallery key"):
        dev.install(w.b2)
    r = dev.install(w.b2, gallery_key=lambda: load_key_file(w.key_path))
    assert r["gallery"].startswith(f"re-embedded {old.n_templates} templates of {PEOPLE} people")
    new = GalleryFile(root / "current/gallery.efg", load_key_file(w.key_path)).load()
    assert new.model == ModelRef("mobilefacenet-foamliu-ms1m", sha256_file(w.int8))
    assert [(i.id, i.name, i.n_templates) for i in new.identities()] == [
        (i.id, i.name, i.n_templates) for i in old.identities()
    ]  # 0 identities lost, same ids
    assert new.generation == old.generation + 1
    after = _recognized(w, root / "current/gallery.efg", root / "current/models/embedder.onnx")
    assert after == before, (sorted(before - after), sorted(after - before))
    # rollback: the float release and its own (old) gallery generation
    assert main(["bundle", "rollback", "--root", str(root), "--trusted-keys", str(w.trusted),
                 "--restart-command", "", "--health-command", ""]) == 0  # fmt: skip
    back = GalleryFile(root / "current/gallery.efg", load_key_file(w.key_path)).load()
    assert back.model == old.model and back.fingerprint() == old.fingerprint()


MFN = ["--model", "mobilefacenet-dyn"]  # the INT8 file is a MobileFaceNet


@pytest.mark.slow
def test_gallery_migrate_cli(world: SimpleNamespace, tmp_path: Path, capsys) -> None:
    w = world
    g = tmp_path / "g.efg"
    shutil.copyfile(w.gallery, g)
    common = ["--gallery", str(g), "--key-file", str(w.key_path)]
    assert main(["gallery", "migrate", *common, "--embedder", str(w.int8), *MFN]) == 0
    assert "re-embedded" in capsys.readouterr().out
    gf = GalleryFile(g, load_key_file(w.key_path))
    assert gf.load().model.sha256 == sha256_file(w.int8)
    assert gf.load_backup().model == ModelRef.of(w.pipeline.embedder)  # previous generation
    assert main(["gallery", "migrate", *common, "--embedder", str(w.int8), *MFN]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.slow
def test_no_crops_refuses_another_embedder(world: SimpleNamespace, tmp_path: Path, capsys):
    w = world
    g = tmp_path / "g.efg"
    shutil.copyfile(w.gallery, g)
    common = ["--gallery", str(g), "--key-file", str(w.key_path)]
    assert main(["gallery", "settings", *common, "--keep-crops", "off"]) == 0
    gf = GalleryFile(g, load_key_file(w.key_path))
    assert not gf.load().keep_crops and not gf.load_backup().keep_crops  # crops purged
    root = tmp_path / "dev"
    dev = device(root, w.trusted)
    dev.install(w.b1, import_gallery=g)
    capsys.readouterr()
    rc = main(["bundle", "install", str(w.b2), "--root", str(root), "--trusted-keys",
               str(w.trusted), "--restart-command", "", "--health-command", "",
               "--key-file", str(w.key_path)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == BundleError.exit_code
    assert "\n" not in err and "no stored face crop" in err and "re-enroll" in err
    assert dev.current_version() == 1
    # an empty gallery needs no crops: it is rebound to the new embedder
    gf2 = GalleryFile(tmp_path / "empty.efg", load_key_file(w.key_path))
    gf2.create(model=ModelRef.of(w.pipeline.embedder))
    dev2 = device(tmp_path / "dev2", w.trusted)
    dev2.install(w.b1, import_gallery=tmp_path / "empty.efg")
    dev2.install(w.b2, gallery_key=lambda: load_key_file(w.key_path))
    g2 = GalleryFile(tmp_path / "dev2/current/gallery.efg", load_key_file(w.key_path)).load()
    assert len(g2) == 0 and g2.model.sha256 == sha256_file(w.int8)


def test_gallery_written_before_crops_still_opens(tmp_path: Path) -> None:
    """A gallery file written by the code on main before crops existed (random embeddings,
    committed with its throwaway key) opens, keeps its content and stays crop-free."""
    for name in ("gallery_main_2026-12.efg", "gallery_main_2026-12.key"):
        shutil.copyfile(FIXTURES / name, tmp_path / name)
    os.chmod(tmp_path / "gallery_main_2026-12.key", 0o600)
    gf = GalleryFile(tmp_path / "gallery_main_2026-12.efg",
                     load_key_file(tmp_path / "gallery_main_2026-12.key"))  # fmt: skip
    g = gf.load()
    assert [i.name for i in g.identities()] == ["Ada", "Grace", "Linus"]
    assert not g.keep_crops and g.missing_crops() == 6
    assert g.fingerprint() == "b45002ba50432a832b7bea176a72826685067934e0eb39491fe597f835f43dbd"
    with gf.edit() as g2:
        g2.rename(g2.find("Ada").id, "Ada L.")
    assert "crop_shape" not in gf.load().to_payload()[:400].decode("latin-1")
    # opting in keeps crops from then on
    with gf.edit() as g3:
        g3.set_keep_crops(True)
        t = g3.templates(g3.find("Grace").id)[0]
        t.crop = np.full((112, 112, 3), 7, np.uint8)
        g3.add_templates(g3.find("Grace").id, [t])
    g4 = gf.load()
    assert g4.keep_crops and g4.missing_crops() == 6
    assert any(t.crop is not None and t.crop.mean() == 7 for t in g4.templates(g4.find("Grace").id))


def test_init_keep_crops_cli(tmp_path: Path) -> None:
    g, k = tmp_path / "g.efg", tmp_path / "g.key"
    assert main(["gallery", "init", "--gallery", str(g), "--key-file", str(k), "--create-key",
                 "--keep-crops"]) == 0  # fmt: skip
    gf = GalleryFile(g, load_key_file(k))
    assert gf.load().keep_crops
    assert main(["gallery", "settings", "--gallery", str(g), "--key-file", str(k),
                 "--keep-crops", "off"]) == 0  # fmt: skip
    assert not gf.load().keep_crops


def test_migrate_file_reembeds_under_the_lock_and_keeps_the_old_generation(tmp_path: Path):
    """gallery/migrate.migrate_file (what ``gallery migrate`` runs), with a stand-in embedder."""
    from edgeface.gallery import Template
    from edgeface.gallery.migrate import migrate_file

    class Halves:  # the mean of each crop's halves as a 128-d embedding: cheap, deterministic
        model_id, model_sha256, dim = "halves", "h" * 64, 128

        def embed(self, crops: np.ndarray) -> np.ndarray:
            v = np.repeat(crops.reshape(len(crops), 2, -1).mean(axis=2), 64, axis=1)
            return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    old = ModelRef("old", "0" * 64)
    gf = GalleryFile(tmp_path / "g.efg", create_key_file(tmp_path / "g.key"))
    gf.create(model=old, keep_crops=True)
    crop = np.full((112, 112, 3), 7, np.uint8)
    with gf.edit() as g:
        g.add_identity("Ann", [Template(np.ones(128, np.float32) / 128**0.5, 0.9, old, crop=crop)])
    migrated = migrate_file(gf, Halves())
    assert migrated is not None and migrated.model == ModelRef.of(Halves())
    assert gf.load().model == ModelRef.of(Halves()) and gf.load_backup().model == old
    assert [i.name for i in gf.load().identities()] == ["Ann"]
    assert migrate_file(gf, Halves()) is None  # already made with that model
