"""Signed bundles: build, verify, every refusal, install, self-test, health check, rollback.

Bundles are built from the real float MobileFaceNet and MTCNN files with the packaged
calibration; malformed ones are signed with a *trusted* key (what a compromised build machine
could send), so each refusal below is the device's own check, not the signature's.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bundle_support import (
    device,
    file_info,
    float_bundle,
    make_keys,
    manifest_of,
    members,
    resign,
    tar_of,
)

from edgeface.bundle import envelope, keys
from edgeface.bundle.build import BuildSpec, build
from edgeface.bundle.device import verify_release
from edgeface.bundle.errors import BundleError, SelfTestError
from edgeface.cli.main import main
from edgeface.errors import ConfigError


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, models_ready: None) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("bundles")
    private, trusted = make_keys(d)
    bundles = {v: float_bundle(d / f"v{v}.efb", private, v) for v in (1, 2)}
    return SimpleNamespace(d=d, private=private, trusted=trusted, b=bundles)


def _regions(bundle: Path) -> dict[str, tuple[int, int]]:
    """Byte ranges of every part of the file, tar headers, data and padding included."""
    env = envelope.read(bundle)
    off = env.payload_offset
    m = len(env.manifest_bytes)
    r = {
        "magic": (0, 8),
        "format version": (8, 10),
        "manifest length": (10, 14),
        "manifest": (14, 14 + m),
        "signature": (14 + m, off),
    }
    data = bundle.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data[off:])) as tar:
        members_ = tar.getmembers()
    for i, t in enumerate(members_):
        r[f"tar header {i}"] = (off + t.offset, off + t.offset_data)
        r[f"data {t.name}"] = (off + t.offset_data, off + t.offset_data + t.size)
        pad_end = off + t.offset_data + (t.size + 511) // 512 * 512
        if pad_end > off + t.offset_data + t.size:
            r[f"padding {t.name}"] = (off + t.offset_data + t.size, pad_end)
    last = members_[-1]
    end0 = off + last.offset_data + (last.size + 511) // 512 * 512
    r["end of archive"] = (end0, len(data))
    return r


def test_build_verify_inspect(kit: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    env = envelope.verify(kit.b[1], keys.trusted_keys(kit.trusted))
    m = env.manifest
    assert env.verified and m["version"] == 1 and m["name"] == "door-float"
    assert set(m["files"]) == {
        "models/embedder.onnx",
        "models/embedder.onnx.calibration.json",
        "models/derived/mtcnn_weights.npz",
        "selftest/vectors.npz",
    }
    from edgeface.modelstore import resolve_model, sha256_file

    dyn = sha256_file(resolve_model("mobilefacenet-dyn"))
    assert m["files"]["models/embedder.onnx"]["sha256"] == dyn
    assert m["float_source_sha256"] == dyn  # not from a quantize run: its own source
    assert m["target"]["arch"] and m["target"]["backend"] == "onnxruntime"
    assert main(["bundle", "verify", str(kit.b[1]), "--trusted-keys", str(kit.trusted)]) == 0
    assert main(["bundle", "inspect", "--json", str(kit.b[1])]) == 0
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert out["signature_checked"] is False and out["version"] == 1


def test_every_region_of_the_file_is_covered(kit: SimpleNamespace, tmp_path: Path) -> None:
    trusted = keys.trusted_keys(kit.trusted)
    data = kit.b[1].read_bytes()
    regions = _regions(kit.b[1])
    assert {"padding selftest/vectors.npz", "end of archive", "signature"} <= set(regions)
    tried = 0
    for a, b in regions.values():
        for pos in sorted({a, (a + b) // 2, b - 1}):
            for bit in (0x01, 0x80):
                bad = bytearray(data)
                bad[pos] ^= bit
                p = tmp_path / "bad.efb"
                p.write_bytes(bytes(bad))
                with pytest.raises(BundleError):
                    envelope.verify(p, trusted)
                tried += 1
    assert tried >= 60
    for cut in (0, 7, 13, 20, regions["signature"][1] - 1, len(data) // 2, len(data) - 1):
        p = tmp_path / "cut.efb"
        p.write_bytes(data[:cut])
        with pytest.raises(BundleError, match=r"truncated|not an edgeface|corrupt"):
            envelope.verify(p, trusted)
    p = tmp_path / "long.efb"
    p.write_bytes(data + b"\0")
    with pytest.raises(BundleError, match="extra bytes"):
        envelope.verify(p, trusted)


def test_tampered_bundle_installs_nothing(kit: SimpleNamespace, tmp_path: Path) -> None:
    data = bytearray(kit.b[1].read_bytes())
    data[-3000] ^= 0x10
    bad = tmp_path / "bad.efb"
    bad.write_bytes(bytes(data))
    root = tmp_path / "dev"
    rc = main(
        ["bundle", "install", str(bad), "--root", str(root), "--trusted-keys", str(kit.trusted),
         "--restart-command", "", "--health-command", ""]
    )  # fmt: skip
    assert rc == BundleError.exit_code
    assert not (root / "current").exists()
    assert [p.name for p in (root / "releases").iterdir()] == []


def test_unknown_key_and_forged_key_id(kit: SimpleNamespace, tmp_path: Path) -> None:
    other_private, other_trusted = make_keys(tmp_path, "other")
    with pytest.raises(BundleError, match="unknown key"):
        envelope.verify(kit.b[1], keys.trusted_keys(other_trusted))
    # signed by another key but claiming the trusted key's id
    env = envelope.read(kit.b[1])
    payload = tmp_path / "payload.tar"
    payload.write_bytes(kit.b[1].read_bytes()[env.payload_offset :])
    forged = tmp_path / "forged.efb"
    envelope.write(forged, env.manifest, payload, keys.load_private(other_private))
    with pytest.raises(BundleError, match="bad signature"):
        envelope.verify(forged, keys.trusted_keys(kit.trusted))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no trusted public keys"):
        keys.trusted_keys(tmp_path / "empty")


def test_versions_expiry_and_target(kit: SimpleNamespace, tmp_path: Path) -> None:
    dev = device(tmp_path / "dev", kit.trusted)
    assert dev.install(kit.b[2])["version"] == 2
    with pytest.raises(BundleError, match="not newer than 2"):
        dev.install(kit.b[1])
    with pytest.raises(BundleError, match="already the active release"):
        dev.install(kit.b[2], allow_downgrade=True)
    r = dev.install(kit.b[1], allow_downgrade=True)
    assert (r["version"], r["previous"]) == (1, 2)
    assert dev.status()["highest_version"] == 2  # the counter does not go down
    with pytest.raises(BundleError, match="not newer than 2"):
        dev.install(kit.b[2])  # equal to the counter
    for kw, why in (
        ({"expires": time.time() - 60}, "expired"),
        ({"min_edgeface": "99.0"}, "needs edgeface >= 99.0"),
        ({"arch": "armv7l"}, "built for armv7l"),
    ):
        b = float_bundle(tmp_path / "x.efb", kit.private, 9, **kw)
        with pytest.raises(BundleError, match=why):
            dev.install(b)
    assert dev.current_version() == 1


def _bad_member_cases(good: dict[str, bytes]) -> dict[str, tuple[list, str]]:
    emb = "models/embedder.onnx"
    rest = [file_info(n, d) for n, d in good.items() if n != emb]

    def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        return info, None

    return {
        "absolute path": ([file_info("/tmp/edgeface-evil", b"x"), *rest], "unsafe member path"),
        "dot-dot": ([file_info("models/../../evil", b"x"), *rest], "unsafe member path"),
        "symlink": ([special(emb, tarfile.SYMTYPE, "/etc/passwd"), *rest], "is a link"),
        "hard link": ([special(emb, tarfile.LNKTYPE, "selftest/vectors.npz"), *rest], "is a link"),
        "char device": ([special(emb, tarfile.CHRTYPE), *rest], "is a device"),
        "block device": ([special(emb, tarfile.BLKTYPE), *rest], "is a device"),
        "fifo": ([special(emb, tarfile.FIFOTYPE), *rest], "special file"),
        "directory": ([special("models", tarfile.DIRTYPE), file_info(emb, good[emb]), *rest],
                      "is a directory"),
        "bigger than the manifest": ([file_info(emb, good[emb] + b"\0" * 4096), *rest],
                                     "the manifest says"),
        "not in the manifest": ([file_info("extra.bin", b"x"), file_info(emb, good[emb]), *rest],
                                "not in the manifest"),
        "twice": ([file_info(emb, good[emb]), file_info(emb, good[emb]), *rest], "appears twice"),
        "missing": (rest, "payload lacks"),
        "other content": ([file_info(emb, bytes(reversed(good[emb]))), *rest], "wrong sha256"),
    }  # fmt: skip


def test_bad_members_are_refused(kit: SimpleNamespace, tmp_path: Path) -> None:
    good = members(kit.b[1])
    dev = device(tmp_path / "dev", kit.trusted)
    dev.install(kit.b[1])
    for case, (entries, why) in _bad_member_cases(good).items():
        bad = resign(kit.b[1], tmp_path / "bad.efb", kit.private, tar_of(entries),
                     manifest_changes={"version": 5})  # fmt: skip
        with pytest.raises(BundleError, match=why):
            dev.install(bad)
        assert dev.current_version() == 1, case
        assert not (tmp_path / "dev" / "releases" / "5").exists(), case
        assert not Path("/tmp/edgeface-evil").exists() and not (tmp_path / "evil").exists()
    # leftovers of the refused installs are cleaned by the next one
    dev.install(kit.b[2])
    assert sorted(p.name for p in (tmp_path / "dev" / "releases").iterdir()) == ["1", "2"]


def test_failing_selftest_switches_nothing(kit: SimpleNamespace, tmp_path: Path) -> None:
    good = members(kit.b[1])
    with np.load(io.BytesIO(good["selftest/vectors.npz"])) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["embedder.output"] = np.roll(arrays["embedder.output"], 1, axis=0)  # wrong outputs
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    good["selftest/vectors.npz"] = buf.getvalue()
    manifest = envelope.read(kit.b[1]).manifest
    import hashlib

    files = dict(manifest["files"])
    files["selftest/vectors.npz"] = {
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "size": len(buf.getvalue())
    }  # fmt: skip
    bad = resign(kit.b[1], tmp_path / "st.efb", kit.private,
                 tar_of([file_info(n, d) for n, d in good.items()]),
                 manifest_changes={"version": 3, "files": files})  # fmt: skip
    dev = device(tmp_path / "dev", kit.trusted)
    dev.install(kit.b[1])
    with pytest.raises(SelfTestError, match=r"self-test failed.*embeddings differ"):
        dev.install(bad)
    assert dev.current_version() == 1 and not (tmp_path / "dev/releases/3").exists()
    # a backend that cannot run the model also fails the self-test
    dev_litert = device(tmp_path / "dev2", kit.trusted, backend="litert")
    with pytest.raises(SelfTestError, match="self-test failed"):
        dev_litert.install(kit.b[1])
    assert dev_litert.current_version() is None


def test_failing_health_check_or_restart_rolls_back(kit: SimpleNamespace, tmp_path: Path) -> None:
    root = tmp_path / "dev"
    device(root, kit.trusted).install(kit.b[1])
    for kw in ({"health_command": ["false"]}, {"restart_command": ["false"]}):
        with pytest.raises(SelfTestError, match=r"exited 1.*rolled back to 1"):
            device(root, kit.trusted, **kw).install(kit.b[2])
        dev = device(root, kit.trusted)
        assert dev.current_version() == 1 and dev.previous_version() is None
        assert dev.highest_version() == 1
        verify_release(root / "current", keys.trusted_keys(kit.trusted))
    # the health check runs after the switch: it sees the new release as current
    probe = (
        f"import os, sys; sys.exit(0 if os.path.realpath({str(root / 'current')!r})"
        f".endswith('/releases/2') else 1)"
    )
    r = device(root, kit.trusted, health_command=[sys.executable, "-c", probe]).install(kit.b[2])
    assert (r["version"], r["previous"]) == (2, 1)


def test_rollback_list_status_cli(kit: SimpleNamespace, tmp_path: Path, capsys) -> None:
    root = tmp_path / "dev"
    common = ["--root", str(root), "--trusted-keys", str(kit.trusted),
              "--restart-command", "", "--health-command", ""]  # fmt: skip
    assert main(["bundle", "install", str(kit.b[1]), *common]) == 0
    assert main(["bundle", "install", str(kit.b[2]), *common]) == 0
    assert main(["bundle", "rollback", *common]) == 0
    assert os.readlink(root / "current") == "releases/1"
    assert os.readlink(root / "previous") == "releases/2"
    capsys.readouterr()
    assert main(["bundle", "list", "--json", *common]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["role"], r["state"]) for r in rows] == [
        (1, "current", "complete"), (2, "previous", "complete")
    ]  # fmt: skip
    (root / "releases/2/models/embedder.onnx").write_bytes(b"broken")
    assert main(["bundle", "list", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)[1]["state"].startswith("damaged")
    assert main(["bundle", "rollback", *common]) == BundleError.exit_code  # damaged: refused
    assert main(["bundle", "status", "--json", *common]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["current"], s["previous"], s["highest_version"]) == (1, 2, 2)
    assert manifest_of(root / "current")["version"] == 1


def test_build_refuses_a_calibration_of_another_model(kit: SimpleNamespace, tmp_path) -> None:
    from edgeface.modelstore import resolve_model
    from edgeface.recognition.calibration import default_calibration_path

    spec = BuildSpec(
        name="x",
        version=1,
        embedder=resolve_model("mobilefacenet"),  # fixed-batch file: another sha256
        calibration=default_calibration_path("mobilefacenet-foamliu-ms1m", True),
        embedder_model="mobilefacenet-dyn",
    )
    with pytest.raises(BundleError, match="calibration is for model sha256"):
        build(spec, kit.private, tmp_path / "x.efb")
    assert not (tmp_path / "x.efb").exists()
    os.chmod(kit.private, 0o644)
    try:
        with pytest.raises(ConfigError, match="readable by others"):
            build(spec, kit.private, tmp_path / "x.efb")
    finally:
        os.chmod(kit.private, 0o600)


def test_runtime_refuses_an_embedder_without_its_own_calibration(
    models_ready: None, tmp_path: Path
) -> None:
    import shutil

    from edgeface.detector import DetectorConfig
    from edgeface.embedder import EmbedderConfig
    from edgeface.modelstore import resolve_model
    from edgeface.recognition import FacePipeline, PipelineConfig
    from edgeface.recognition.calibration import Calibration, calibration_beside

    model = tmp_path / "other.onnx"
    shutil.copyfile(resolve_model("mobilefacenet"), model)  # same space, other file
    cfg = PipelineConfig(
        detector=DetectorConfig(workers=1),
        embedder=EmbedderConfig(model="mobilefacenet", path=str(model)),
    )
    p = FacePipeline.from_config(cfg)
    with pytest.raises(ConfigError, match=r"no calibration for embedding model .* with sha256"):
        p.threshold()
    cal = Calibration(p.embedder.model_id, p.embedder.model_sha256, {"1e-03": 0.3}, flip=True)
    cal.save(calibration_beside(model))
    assert FacePipeline.from_config(cfg).threshold() == 0.3


def test_release_gallery_keeps_owner_and_mode(kit: SimpleNamespace, tmp_path: Path) -> None:
    """The installer runs as root; the door daemon as its own user must still read the copy."""
    from edgeface.gallery import GalleryFile, ModelRef, create_key_file
    from edgeface.gallery.store import Template
    from edgeface.modelstore import resolve_model, sha256_file

    ref = ModelRef("mobilefacenet-foamliu-ms1m", sha256_file(resolve_model("mobilefacenet-dyn")))
    gf = GalleryFile(tmp_path / "g.efg", create_key_file(tmp_path / "g.key"))
    gf.create(model=ref)
    with gf.edit() as g:
        g.add_identity("Ada", [Template(np.ones(128, np.float32), 1.0, ref)])
    os.chmod(gf.path, 0o640)
    if os.geteuid() == 0:
        os.chown(gf.path, 4321, 4321)
    device(tmp_path / "dev", kit.trusted).install(kit.b[1], import_gallery=gf.path)
    st = (tmp_path / "dev/current/gallery.efg").stat()
    assert st.st_mode & 0o777 == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4321)
