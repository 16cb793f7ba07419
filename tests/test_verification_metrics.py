"""Verification metrics and the LFW pairs parser, on hand-made scores and the real file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.evaluation import lfw
from edgeface.evaluation.verification import kfold_accuracy, roc_curve, tar_at_far
from edgeface.recognition.calibration import threshold_for_far


def test_threshold_for_far_accepts_at_most_the_allowed_impostors() -> None:
    imp = np.linspace(0.0, 0.999, 1000)
    t = threshold_for_far(imp, 1e-2)
    assert np.sum(imp >= t) == 10
    t3 = threshold_for_far(imp, 1e-3)
    assert np.sum(imp >= t3) == 1
    # asking for less than 1/n: stricter than every impostor
    assert np.sum(imp >= threshold_for_far(imp, 1e-5)) == 0


def test_roc_of_separable_scores_is_perfect() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    same = np.array([True, True, True, False, False])
    roc = roc_curve(scores, same)
    assert roc.auc == pytest.approx(1.0) and roc.eer == pytest.approx(0.0)
    tar, t = tar_at_far(scores, same, 0.4)  # 0.4 x 2 impostors: none may pass
    assert tar == 1.0 and 0.2 < t <= 0.7


def test_roc_known_auc_and_eer() -> None:
    # 2 genuine (0.8, 0.4) and 2 impostor (0.6, 0.2): AUC = 3/4
    roc = roc_curve(np.array([0.8, 0.6, 0.4, 0.2]), np.array([True, False, True, False]))
    assert roc.auc == pytest.approx(0.75)
    assert roc.eer == pytest.approx(0.5)


def test_kfold_uses_a_threshold_from_the_other_folds() -> None:
    # fold 0 alone would pick t=0.55 (perfect), but folds 1-2 say t~0.35: fold 0 then errs once
    scores = np.array([0.6, 0.5, 0.4, 0.3, 0.9, 0.1, 0.9, 0.1])
    same = np.array([True, False, True, False, True, False, True, False])
    folds = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    mean, _std, per = kfold_accuracy(scores, same, folds)
    assert per[1] == per[2] == 1.0 and per[0] < 1.0
    assert mean == pytest.approx(np.mean(per))


def test_real_pairs_file_is_parsed_with_identity_disjoint_folds(lfw_dir: Path) -> None:
    pairs = lfw.read_pairs(lfw_dir / "pairs_dev.txt")
    assert pairs.n_folds == 5 and len(pairs.same) == 3000 and pairs.same.sum() == 1500
    names_per_fold = [
        {
            k[0]
            for k, f in zip(pairs.left + pairs.right, np.tile(pairs.folds, 2), strict=True)
            if f == i
        }
        for i in range(5)
    ]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not names_per_fold[i] & names_per_fold[j]
    for key in pairs.images()[:50]:
        assert lfw.image_path(lfw_dir / "images", key).is_file()


def test_malformed_pairs_file(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text("2 1\nA\t1\t2\n")
    with pytest.raises(ConfigError, match="header says 2 folds"):
        lfw.read_pairs(bad)
    bad.write_text("hello\n")
    with pytest.raises(ConfigError, match="not an LFW pairs file"):
        lfw.read_pairs(bad)


def test_open_set_identification_on_hand_made_embeddings() -> None:
    e = np.eye(4, dtype=np.float32)
    keys = [("A", 1), ("A", 2), ("B", 1), ("B", 2), ("C", 1)]
    emb = np.stack([e[0], e[0], e[1], 0.6 * e[1] + 0.8 * e[2], e[3]])
    rep = lfw.open_set_identification(keys, emb, fars=(1e-2,))
    assert rep.gallery_size == 2 and rep.genuine_probes == 2 and rep.impostor_probes == 1
    assert rep.rank1 == 1.0
    assert rep.dir_at_far["1e-02"] == 1.0  # impostor C scores 0 against everyone
