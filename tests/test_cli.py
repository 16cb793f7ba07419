"""The command line: right output for good input, one clear line and an exit code for bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli.main import main

GROUP = "detection/dlib_faces/2008_001009.jpg"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_json_and_drawing(capsys, shared_data: Path, tmp_path: Path, models_ready) -> None:
    drawing = tmp_path / "faces.png"
    code, out, err = run(
        capsys, "detect", str(shared_data / GROUP), "--json", "--draw", str(drawing)
    )
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert len(doc["faces"]) == 2 and len(doc["faces"][0]["landmarks"]) == 5
    assert drawing.stat().st_size > 10_000


def test_detect_min_face_option(capsys, shared_data: Path, models_ready) -> None:
    path = str(shared_data / "detection/dlib_faces/bald_guys.jpg")
    _, out20, _ = run(capsys, "detect", path, "--json")
    _, out200, _ = run(capsys, "detect", path, "--json", "--min-face", "200")
    assert len(json.loads(out200)["faces"]) < len(json.loads(out20)["faces"])


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [
        (None, 3, "no such file"),
        (b"", 3, "empty file"),
        (b"garbage" * 10, 3, "not a readable image"),
    ],
)
def test_detect_bad_files_give_one_line(
    capsys, tmp_path: Path, content, code, needle, models_ready
) -> None:
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    rc, out, err = run(capsys, "detect", str(path))
    assert out == ""
    assert rc == code and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_detect_several_files_reports_bad_ones_and_fails(
    capsys, tmp_path: Path, shared_data: Path, models_ready
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    rc, out, _ = run(capsys, "detect", str(shared_data / GROUP), str(bad))
    assert rc == 1 and "2 face(s)" in out and "error" in out


def test_verify_same_and_different(capsys, lfw_dir: Path, models_ready) -> None:
    a = lfw_dir / "images/Tony_Blair/Tony_Blair_0001.jpg"
    b = lfw_dir / "images/Tony_Blair/Tony_Blair_0010.jpg"
    c = lfw_dir / "images/Colin_Powell/Colin_Powell_0001.jpg"
    rc, out, _ = run(capsys, "verify", str(a), str(b))
    assert rc == 0 and out.startswith("SAME person") and "threshold" in out
    rc, out, _ = run(capsys, "verify", str(a), str(c), "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["same"] is False and doc["score"] < doc["threshold"]
    # an explicit threshold below the impostor score turns the decision around
    rc, out, _ = run(capsys, "verify", str(a), str(c), "--threshold", str(doc["score"] - 0.01))
    assert rc == 0 and "(given)" in out
    rc, _, err = run(capsys, "verify", str(a), str(c), "--threshold", "7")
    assert rc == 2 and "threshold" in err


def test_verify_no_face_is_a_clear_error(
    capsys, lfw_dir: Path, tmp_path: Path, models_ready
) -> None:
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 90, np.uint8))
    rc, _, err = run(
        capsys, "verify", str(lfw_dir / "images/Tony_Blair/Tony_Blair_0001.jpg"), str(blank)
    )
    assert rc == 5 and f"no face found in {blank}" in err


def test_embed_json(capsys, lfw_dir: Path, models_ready) -> None:
    rc, out, _ = run(
        capsys, "embed", str(lfw_dir / "images/Tony_Blair/Tony_Blair_0001.jpg"), "--json"
    )
    emb = np.array(json.loads(out)["embedding"])
    # the default embedder (EdgeFace-XS) gives 512 floats
    assert rc == 0 and emb.shape == (512,) and abs(np.linalg.norm(emb) - 1) < 1e-3


def test_wrong_model_file_is_a_clear_error(
    capsys, lfw_dir: Path, tmp_path: Path, models_ready
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x08\x08 not really onnx")
    img = str(lfw_dir / "images/Tony_Blair/Tony_Blair_0001.jpg")
    rc, _, err = run(capsys, "embed", img, "--model", str(fake))
    assert rc == 4 and "cannot load" in err and "Traceback" not in err


def test_models_list_and_verify(capsys, models_ready) -> None:
    rc, out, _ = run(capsys, "models", "list", "--json")
    assert rc == 0 and {r["name"] for r in json.loads(out)} >= {"mtcnn", "mobilefacenet"}
    rc, out, _ = run(capsys, "models", "verify")
    assert rc == 0 and "FAILED" not in out


def test_the_command_asks_numpy_for_one_blas_thread_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # numpy is loaded already in this test process, so only the variables can be checked
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    assert main(["--version"]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"  # a user's own setting wins
    capsys.readouterr()


def test_usage_errors_exit_2(capsys, shared_data: Path, tmp_path: Path) -> None:
    photo = str(shared_data / GROUP)
    for argv in (
        ["detect", photo, photo, "--draw", str(tmp_path / "x.png")],  # --draw takes one image
        ["detect", photo, "--draw", str(tmp_path / "out.txt")],  # not an image file name
        ["detect", photo, "--min-face", "big"],  # argparse
        ["detect"],
        ["nosuch"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "x.png").exists()


def test_verify_runs_without_the_crypto_extra(lfw_dir: Path, models_ready) -> None:
    """The quickstart installs only the onnx extra: verify must not import the gallery's
    cryptography (it once did through the pipeline's 1:N import, and the quickstart failed)."""
    import subprocess
    import sys

    block = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cryptography':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgeface.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    a = lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0001.jpg"
    b = lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0010.jpg"
    r = subprocess.run(
        [sys.executable, "-c", block, "verify", str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "SAME person" in r.stdout
