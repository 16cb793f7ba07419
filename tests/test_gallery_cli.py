"""``edgeface gallery ...`` and ``edgeface identify`` end to end on real LFW photos.

The CLI's pipeline factory is pointed at the session pipeline so models load once."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from edgeface.cli.main import main


@pytest.fixture
def cli(pipeline, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("EDGEFACE_GALLERY_KEY_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    base = ["--gallery", str(tmp_path / "g.efg"), "--key-file", str(tmp_path / "g.key")]

    def run(*args: str, base_args: bool = True, face_pipeline=pipeline) -> tuple[int, str, str]:
        argv = list(args)
        if base_args:
            # options go after the action: edgeface gallery enroll --gallery ... NAME IMGS
            cut = 2 if argv[0] == "gallery" else 1
            argv = argv[:cut] + base + argv[cut:]
        code = main(argv, pipeline_factory=lambda: face_pipeline)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_full_cycle(cli, lfw_people, tmp_path):
    gul, brody = lfw_people["Abdullah_Gul"], lfw_people["Adrien_Brody"]
    code, out, _ = cli("gallery", "init", "--create-key")
    assert code == 0 and "created empty gallery" in out
    assert (tmp_path / "g.key").stat().st_mode & 0o777 == 0o600
    code, out, err = cli(
        "gallery", "enroll", "Abdullah Gul", str(gul[0]), str(gul[1]), "--take-largest"
    )
    assert code == 0, err
    assert "enrolled Abdullah Gul" in out
    code, out, err = cli("gallery", "enroll", "Adrien Brody", str(brody[0]), "--take-largest")
    assert code == 0, err

    code, out, _ = cli("gallery", "list", "--json")
    listing = json.loads(out)
    assert [p["name"] for p in listing["identities"]] == ["Abdullah Gul", "Adrien Brody"]
    assert listing["identities"][0]["templates"] == 2
    assert "embedding" not in out and listing["model"]["id"]
    code, out, _ = cli("gallery", "list")
    assert "Abdullah Gul" in out and "2 template(s)" in out

    code, out, _ = cli("identify", str(gul[4]))
    assert code == 0 and out.startswith("Abdullah Gul")
    code, out, _ = cli("identify", str(lfw_people["Ben_Affleck"][0]), "--json")
    res = json.loads(out)["faces"][0]
    assert res["label"] == "unknown" and res["known"] is False
    assert code == 1  # an unknown face: exit 1, like verify's "different"

    # same name again: refused unless --add / --new
    code, _, err = cli("gallery", "enroll", "Abdullah Gul", str(gul[2]), "--take-largest")
    assert code == 7 and "already enrolled" in err and err.count("\n") == 1
    code, out, _ = cli("gallery", "enroll", "Abdullah Gul", str(gul[2]), "--take-largest", "--add")
    assert code == 0 and "updated Abdullah Gul" in out and "3 template(s)" in out
    # enrolling him again under another name is a duplicate: refused, in --dry-run too...
    again = ("gallery", "enroll", "Someone Else", str(gul[3]), "--take-largest")
    for extra in ((), ("--dry-run",)):
        code, _, err = cli(*again, *extra)
        assert code == 7 and "matches the enrolled 'Abdullah Gul'" in err, err
        assert "--allow-duplicate" in err and err.count("\n") == 1
    # ...unless the operator allows it (a warning with the score remains)
    code, _, err = cli(*again, "--allow-duplicate")
    assert code == 0 and "warning: Someone Else matches the enrolled 'Abdullah Gul'" in err
    assert "score 0." in err

    code, out, _ = cli("gallery", "remove", "Someone Else")
    assert code == 0 and "removed Someone Else" in out
    code, out, _ = cli("gallery", "check")
    assert code == 0 and "ok: 2 people" in out and "g.efg.bak: ok" in out
    code, out, _ = cli("gallery", "check", "--with-model", "--json")
    assert json.loads(out)["model_matches"] is True


def test_no_face_and_bad_inputs_are_one_line_errors(cli, tmp_path, lfw_people):
    assert cli("gallery", "init", "--create-key")[0] == 0
    grey = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(grey), np.full((200, 200, 3), 127, np.uint8))
    code, _, err = cli("gallery", "enroll", "Nobody", str(grey))
    assert code == 5 and "no usable face" in err and "no face found" in err
    code, _, err = cli("identify", str(grey))
    assert code == 5 and "no face" in err
    code, _, err = cli("identify", str(tmp_path / "missing.jpg"))
    assert code == 3 and "missing.jpg" in err
    code, _, err = cli("gallery", "enroll", "Nobody")
    assert code == 2 and "no images" in err
    code, _, err = cli("gallery", "remove", "Nobody")
    assert code == 7 and "nobody named" in err
    code, _, err = cli("gallery", "init")
    assert code == 7 and "already exists" in err
    for e in (err,):
        assert "Traceback" not in e


def test_key_errors(cli, tmp_path, monkeypatch):
    assert cli("gallery", "init", "--create-key")[0] == 0
    code, _, err = cli(
        "gallery", "list", "--key-file", str(tmp_path / "other.key"), base_args=False
    )
    assert code == 11 and "other.key" in err and "not found" in err
    os.chmod(tmp_path / "g.key", 0o644)
    code, _, err = cli("gallery", "list")
    assert code == 11 and "chmod 600" in err
    os.chmod(tmp_path / "g.key", 0o600)
    # wrong key: a fresh key file
    from edgeface.gallery import create_key_file

    create_key_file(tmp_path / "wrong.key")
    code, _, err = main_err(
        [
            "gallery",
            "list",
            "--gallery",
            str(tmp_path / "g.efg"),
            "--key-file",
            str(tmp_path / "wrong.key"),
        ]
    )
    assert code == 8 and "wrong key" in err and "g.efg" in err
    code, _, err = main_err(["gallery", "list", "--gallery", str(tmp_path / "g.efg")])
    assert code == 11 and "no gallery key given" in err
    monkeypatch.setenv("EDGEFACE_GALLERY_KEY_FILE", str(tmp_path / "g.key"))
    assert main_err(["gallery", "list", "--gallery", str(tmp_path / "g.efg")])[0] == 0
    # tampered file: exit 9, and check --restore brings the backup back
    # argparse usage error: exit 2, not a traceback
    assert main(["gallery", "list", "--key-file"]) == 2
    data = bytearray((tmp_path / "g.efg").read_bytes())
    assert main_err(["gallery", "check", "--gallery", str(tmp_path / "g.efg")])[0] == 0
    data[-3] ^= 0x40
    (tmp_path / "g.efg").write_bytes(bytes(data))
    code, _, err = main_err(["gallery", "list", "--gallery", str(tmp_path / "g.efg")])
    assert code == 9 and "authentication failed" in err


def main_err(argv):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_export_import_rekey(cli, tmp_path, lfw_people, monkeypatch):
    assert cli("gallery", "init", "--create-key")[0] == 0
    assert (
        cli(
            "gallery", "enroll", "Ana Guevara", str(lfw_people["Ana_Guevara"][0]), "--take-largest"
        )[0]
        == 0
    )
    monkeypatch.setenv("EXPORT_PW", "a transport passphrase")
    code, out, err = cli(
        "gallery", "export", str(tmp_path / "copy.efg"), "--to-passphrase-env", "EXPORT_PW"
    )
    assert code == 0, err
    # the copy opens with the passphrase only
    g2 = ["--gallery", str(tmp_path / "second.efg"), "--key-file", str(tmp_path / "k2.key")]
    assert main_err(["gallery", "init", *g2, "--create-key"])[0] == 0
    code, out, err = main_err(["gallery", "import", *g2, str(tmp_path / "copy.efg")])
    assert code == 8  # tried the gallery's own key on a passphrase file
    code, out, err = main_err(
        ["gallery", "import", *g2, str(tmp_path / "copy.efg"), "--from-passphrase-env", "EXPORT_PW"]
    )
    assert code == 0 and "1 added" in out, err
    code, out, _ = main_err(
        ["gallery", "import", *g2, str(tmp_path / "copy.efg"), "--from-passphrase-env", "EXPORT_PW"]
    )
    assert "0 added" in out and "1 unchanged" in out

    # rekey to a new key file: old key stops working (main file and backup)
    code, out, err = cli(
        "gallery", "rekey", "--new-key-file", str(tmp_path / "new.key"), "--create-key"
    )
    assert code == 0, err
    code, _, err = cli("gallery", "list")
    assert code == 8
    new = ["--gallery", str(tmp_path / "g.efg"), "--key-file", str(tmp_path / "new.key")]
    code, out, _ = main_err(["gallery", "check", *new])
    assert code == 0 and "ok: 1 people" in out and "g.efg.bak: ok" in out
    monkeypatch.setenv("SHORT_PW", "short")
    code, _, err = main_err(["gallery", "rekey", *new, "--new-passphrase-env", "SHORT_PW"])
    assert code == 11 and "too short" in err


def test_model_mismatch_via_cli(cli, pipeline, lfw_people, monkeypatch):
    assert cli("gallery", "init", "--create-key")[0] == 0
    assert (
        cli(
            "gallery", "enroll", "Ana Palacio", str(lfw_people["Ana_Palacio"][0]), "--take-largest"
        )[0]
        == 0
    )
    other = SimpleNamespace(
        embedder=SimpleNamespace(
            model_id=pipeline.embedder.model_id + "-int8", model_sha256="f" * 64
        ),
        analyze=pipeline.analyze,
        threshold=pipeline.threshold,
    )
    code, _, err = cli("identify", str(lfw_people["Ana_Palacio"][1]), face_pipeline=other)
    assert code == 10 and "re-enroll" in err
    code, _, err = cli(
        "gallery", "enroll", "X", str(lfw_people["Ana_Palacio"][1]), face_pipeline=other
    )
    assert code == 10


def test_enroll_directory_tree(cli, tmp_path, lfw_people):
    assert cli("gallery", "init", "--create-key")[0] == 0
    root = tmp_path / "people"
    for name in ("Albert_Costa", "Amelia_Vega"):
        (root / name).mkdir(parents=True)
        for p in lfw_people[name][:2]:
            (root / name / p.name).symlink_to(p)
    code, out, err = cli("gallery", "enroll", "--dir", str(root), "--take-largest", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [r["name"] for r in report] == ["Albert Costa", "Amelia Vega"]
    assert all(r["action"] == "enrolled" and r["templates"] >= 1 for r in report)


def test_check_restore_from_backup(cli, tmp_path):
    from edgeface.gallery import GalleryFile, ModelRef, Template, load_key_file

    assert cli("gallery", "init", "--create-key")[0] == 0
    gf = GalleryFile(tmp_path / "g.efg", load_key_file(tmp_path / "g.key"))
    with gf.edit() as g:
        g.add_identity("Kept", [Template(np.ones(128, np.float32), 1.0, ModelRef("m", "0" * 64))])
    with gf.edit() as g:
        g.rename(g.find("Kept").id, "Renamed")
    data = bytearray(gf.path.read_bytes())
    data[len(data) // 2] ^= 1
    gf.path.write_bytes(bytes(data))
    code, _, err = cli("gallery", "check")
    assert code == 9 and ".bak" in err
    code, out, err = cli("gallery", "check", "--restore")
    assert code == 0 and "restored generation" in out, err
    assert [i.name for i in gf.load().identities()] == ["Kept"]
    assert len(list(tmp_path.glob("g.efg.damaged-*"))) == 1
    # damaged again within the same second: the first damaged copy is kept, not overwritten
    data = bytearray(gf.path.read_bytes())
    data[len(data) // 2] ^= 1
    gf.path.write_bytes(bytes(data))
    assert cli("gallery", "check", "--restore")[0] == 0
    assert len(list(tmp_path.glob("g.efg.damaged-*"))) == 2


def test_init_refuses_a_missing_directory(cli, tmp_path):
    code, _, err = cli(
        "gallery",
        "init",
        "--gallery",
        str(tmp_path / "no" / "dir" / "g.efg"),
        "--create-key",
        base_args=False,
    )
    assert code == 7 and "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_passphrase_files_are_checked_like_key_files(tmp_path, monkeypatch):
    gallery = ["--gallery", str(tmp_path / "g.efg")]
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple 42\n")
    phrase.chmod(0o644)
    code, _, err = main_err(["gallery", "init", *gallery, "--passphrase-file", str(phrase)])
    assert code == 11 and "chmod 600" in err and len(err.strip().splitlines()) == 1
    phrase.chmod(0o600)
    assert main_err(["gallery", "init", *gallery, "--passphrase-file", str(phrase)])[0] == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for option in ("--passphrase-file", "--key-file"):  # refused at once, never waited on
        code, _, err = main_err(["gallery", "list", *gallery, option, str(fifo)])
        assert code == 11 and "not a regular file" in err
    code, _, err = main_err(
        ["gallery", "list", "--gallery", str(fifo), "--passphrase-file", str(phrase)]
    )
    assert code == 7 and "not a regular file" in err  # a FIFO as the gallery: no wait either
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    code, _, err = main_err(["gallery", "list", *gallery, "--ask-passphrase"])
    assert code == 11 and "needs a terminal" in err


def test_identify_select_and_labelled_faces(cli, lfw_dir, tmp_path):
    """Laura_Bush_0030 has a man beside her: 'largest' picks him, 'central' picks her."""
    photo = lfw_dir / "images" / "Laura_Bush" / "Laura_Bush_0030.jpg"
    assert cli("gallery", "init", "--create-key")[0] == 0
    others = [lfw_dir / "images" / "Laura_Bush" / f"Laura_Bush_000{i}.jpg" for i in (1, 2, 3)]
    assert cli("gallery", "enroll", "Laura Bush", *map(str, others))[0] == 0
    code, out, _ = cli("identify", str(photo), "--select", "central")
    assert code == 0 and out.startswith("Laura Bush"), out
    code, out, _ = cli("identify", str(photo), "--all-faces")
    lines = out.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith("face ") for line in lines), out
    assert any("Laura Bush" in line for line in lines) and any("unknown" in line for line in lines)
    assert code == 0  # someone enrolled is in the photo


def test_enroll_camera_looks_at_exactly_frames(cli, lfw_dir, tmp_path):
    """--frames N: the first N camera frames (every 3rd assessed), never frame N or later."""
    folder = tmp_path / "cam"
    folder.mkdir()
    for i, p in enumerate(sorted((lfw_dir / "images" / "Colin_Powell").glob("*.jpg"))[:28]):
        (folder / f"{i:03d}.jpg").symlink_to(p)
    assert cli("gallery", "init", "--create-key")[0] == 0
    code, out, err = cli(
        "gallery", "enroll", "Colin Powell", "--camera", str(folder), "--frames", "20", "--json"
    )
    assert code == 0, err
    labels = [i["source"] for i in json.loads(out)[0]["images"]]
    indices = [int(s.rsplit("#frame", 1)[1]) for s in labels]
    assert indices and max(indices) < 20 and all(i % 3 == 0 for i in indices), labels


def test_enroll_directory_tree_keeps_going_past_a_refused_person(cli, tmp_path, lfw_people):
    """--dir: a person without a usable face is reported and the others are enrolled."""
    import cv2

    assert cli("gallery", "init", "--create-key")[0] == 0
    root = tmp_path / "people"
    (root / "Albert_Costa").mkdir(parents=True)
    (root / "Albert_Costa" / "a.jpg").symlink_to(lfw_people["Albert_Costa"][0])
    (root / "Grey_Wall").mkdir()
    cv2.imwrite(str(root / "Grey_Wall" / "g.png"), np.full((200, 200, 3), 127, np.uint8))
    code, out, err = cli("gallery", "enroll", "--dir", str(root), "--take-largest", "--json")
    assert code == 5 and "1 of 2 people could not be enrolled" in err
    assert "edgeface: Grey Wall: " in err and "no usable face" in err
    report = json.loads(out)
    assert report[0]["action"] == "enrolled" and report[0]["templates"] == 1
    assert set(report[1]) == {"name", "images", "error"}
    listing = json.loads(cli("gallery", "list", "--json")[1])
    assert [p["name"] for p in listing["identities"]] == ["Albert Costa"]
