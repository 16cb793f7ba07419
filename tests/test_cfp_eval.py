"""CFP protocols read from the released files; `edgeface eval cfp` on a few real pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli.main import main
from edgeface.errors import ConfigError
from edgeface.evaluation import cfp


@pytest.fixture(scope="module")
def cfp_root(shared_data: Path) -> Path:
    root = shared_data / "cfp"
    if not root.is_dir():
        pytest.fail(f"test data missing: {root}")
    return root


@pytest.mark.parametrize("protocol", ["cfp-fp", "cfp-ff"])
def test_dev_folds_have_the_published_layout(cfp_root: Path, protocol: str) -> None:
    pairs = cfp.read_protocol(cfp_root, protocol)
    assert pairs.n_folds == 5 and len(pairs.same) == 3500
    for k in range(5):
        in_fold = pairs.folds == k
        assert in_fold.sum() == 700 and pairs.same[in_fold].sum() == 350
    people = [
        {k[0].split("/")[0] for i, k in enumerate(pairs.left) if pairs.folds[i] == f}
        for f in range(5)
    ]
    assert all(not (people[a] & people[b]) for a in range(5) for b in range(a + 1, 5))
    right_pose = "profile" if protocol == "cfp-fp" else "frontal"
    assert all(k[0].endswith("/frontal") for k in pairs.left)
    assert all(k[0].endswith(f"/{right_pose}") for k in pairs.right)
    assert all(cfp.image_path(cfp_root / "Data" / "Images", k).is_file() for k in pairs.images())


def test_a_corrupt_split_file_is_one_config_error(cfp_root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "cfp"
    shutil.copytree(cfp_root / "Protocol", fake / "Protocol")
    (fake / "Protocol" / "Split" / "FP" / "03" / "same.txt").write_text("12;x\n")
    with pytest.raises(ConfigError, match=r"03/same\.txt"):
        cfp.read_protocol(fake, "cfp-fp")
    with pytest.raises(ConfigError, match="unknown CFP protocol"):
        cfp.read_protocol(fake, "cfp-xx")


def test_eval_cfp_scores_real_pairs_and_counts_faces(
    cfp_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], models_ready: None
) -> None:
    """One fold of 8 people (a small copy of the protocol), through the real command."""
    data = tmp_path / "data"
    proto = data / "cfp" / "Protocol"
    shutil.copytree(cfp_root / "Protocol", proto)
    pairs = cfp.read_protocol(cfp_root, "cfp-fp")
    keep = [i for i in range(len(pairs.same)) if pairs.folds[i] < 2][::35]  # 40 pairs, 2 folds
    for fold in ("01", "02"):
        src = cfp_root / "Protocol" / "Split" / "FP" / fold
        for name in ("same.txt", "diff.txt"):
            lines = (src / name).read_text().split()
            (proto / "Split" / "FP" / fold / name).write_text("\n".join(lines[::35]) + "\n")
    for fold in ("03", "04", "05"):
        shutil.rmtree(proto / "Split" / "FP" / fold)
    (data / "cfp" / "Data").symlink_to(cfp_root / "Data")
    crops = tmp_path / "crops.npz"
    report = tmp_path / "cfp.json"
    args = ["eval", "cfp", "--data", str(data), "--crops", str(crops), "--no-progress"]
    assert main([*args, "--out", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["protocol"] == "cfp-fp" and doc["verification"]["pairs"] == len(keep)
    assert doc["embedder"]["model_id"] == "edgeface-xs-webface12m"
    assert 0.5 < doc["verification"]["accuracy"] <= 1.0
    assert 0 <= doc["no_face"]["count"] <= doc["images"] <= 2 * len(keep)
    assert crops.is_file()
    out = capsys.readouterr().out
    assert "no face found" in out and "TAR @ FAR 1e-03" in out
    # the cached crops are reused (no detector run) and MobileFaceNet is selectable
    assert main([*args, "--embedder", "mobilefacenet-dyn", "--out", str(report)]) == 0
    again = json.loads(report.read_text())
    assert again["embedder"]["model_id"] == "mobilefacenet-foamliu-ms1m"
    assert np.isfinite(again["verification"]["roc_auc"])


def test_eval_cfp_without_the_data_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "cfp", "--data", str(tmp_path)]) == 2
    assert "no such CFP images folder" in capsys.readouterr().err
