"""Calibration from every impostor pair (thresholds down to FAR 1e-6 with their support), the
LFW errata, and the open-set protocol's splits on the real dev file list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.evaluation import lfw, openset
from edgeface.recognition.calibration import (
    CALIBRATED_FARS,
    Calibration,
    load_calibration,
    threshold_for_far,
)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    e = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_blocked_all_pairs_scoring_matches_the_full_matrix() -> None:
    emb = unit_rows(300)
    labels = np.repeat(np.arange(100), 3)
    top, total = lfw.all_impostor_scores(emb, labels, keep_above=-1.0, block=64)
    s = emb @ emb.T
    iu = np.triu_indices(300, 1)
    full = s[iu][labels[iu[0]] != labels[iu[1]]]
    assert total == full.size == 300 * 299 // 2 - 100 * 3
    assert np.allclose(np.sort(top), np.sort(full), atol=1e-5)
    kept, _ = lfw.all_impostor_scores(emb, labels, keep_above=0.3)
    cal = Calibration.from_top_scores(kept, total, embedding_space="m", model_sha256="0" * 64,
                                      fars=(1e-2, 1e-3, 1e-4))  # fmt: skip
    for key, thr in cal.thresholds.items():
        assert thr == pytest.approx(threshold_for_far(full, float(key)), abs=1e-6)
        assert cal.support[key]["impostors_above"] == int(np.sum(full >= thr))
        assert cal.support[key]["impostor_pairs"] == total
    with pytest.raises(ValueError, match="only"):
        Calibration.from_top_scores(kept[:3], total, embedding_space="m", model_sha256="0",
                                    fars=(1e-2,))  # fmt: skip


def test_calibration_file_keeps_support_and_old_files_still_load(tmp_path: Path) -> None:
    cal = Calibration("m", "ab" * 32, {"1e-03": 0.33, "1e-06": 0.6}, support={
        "1e-06": {"impostor_pairs": 24_000_000, "impostors_above": 24}})  # fmt: skip
    cal.save(tmp_path / "c.json")
    back = load_calibration(tmp_path / "c.json")
    assert back.support == cal.support and back.thresholds == cal.thresholds
    raw = json.loads((tmp_path / "c.json").read_text())
    del raw["support"]  # a file written before support existed
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert load_calibration(tmp_path / "old.json").support == {}
    assert back.threshold_at_most(1e-5) == (0.6, "1e-06")
    assert back.threshold_at_most(1e-3) == (0.33, "1e-03")
    assert back.threshold_at_most(1e-8) == (0.6, "1e-06")  # nothing stricter: the strictest


def test_shipped_calibration_reaches_1e6_with_support(pipeline) -> None:
    cal = pipeline.calibration
    assert set(cal.thresholds) == {f"{f:.0e}" for f in CALIBRATED_FARS}
    assert cal.support["1e-06"]["impostor_pairs"] > 20_000_000
    values = [cal.thresholds[f"{f:.0e}"] for f in sorted(CALIBRATED_FARS, reverse=True)]
    assert values == sorted(values)  # stricter FAR, higher threshold


def test_errata_file_parses_and_merges_names(lfw_dir: Path, tmp_path: Path) -> None:
    errata = lfw.read_errata()
    keys = lfw.all_images(lfw_dir / "images")
    names = {k[0] for k in keys}
    assert set(errata.same) <= names and set(errata.same.values()) <= names
    assert errata.drop <= set(keys)
    labels = lfw.identity_labels(keys, errata)
    idx = {k: i for i, k in enumerate(keys)}
    assert labels[idx[("Noer_Moeis", 1)]] == labels[idx[("Noer_Muis", 1)]]
    assert not errata.keep(keys)[idx[("Carlos_Ruckauf", 1)]]
    bad = tmp_path / "bad.txt"
    bad.write_text("merge A B\n")
    with pytest.raises(ConfigError, match=r"bad\.txt:1"):
        lfw.read_errata(bad)


def test_open_set_splits_on_the_dev_file_list(lfw_dir: Path) -> None:
    keys = lfw.all_images(lfw_dir / "images")
    pair_people = {k[0] for k in lfw.read_pairs(lfw_dir / "pairs_dev.txt").images()}
    splits, cohort = openset.make_splits(keys, pair_people, gallery_size=100, repeats=2)
    assert len(cohort) == 1549  # the dev images of people in no pair
    assert all(keys[i][0] not in pair_people for i in cohort)
    for s in splits:
        assert len(s.templates) == 100
        enrolled = {keys[int(t[0])][0] for t in s.templates}
        assert not enrolled & {keys[i][0] for i in s.impostor}
        assert not set(s.impostor) & set(cohort) and not set(s.genuine) & set(cohort)


def test_frame_report_on_hand_made_embeddings() -> None:
    e = np.eye(6, dtype=np.float32)
    emb = np.stack([e[0], e[0], e[1], e[1], 0.8 * e[0] + 0.6 * e[2], e[3], e[4]])
    split = openset.Split([np.array([0]), np.array([2])], np.array([1, 3]), np.array([0, 1]),
                          np.array([4, 5]), np.array([0, 1]))  # fmt: skip
    rep = openset.frame_report(emb, [split], np.array([6]), margins=(0.1,))
    d = rep["default"]["dir_at_fpir"]["1e-02"]
    assert d["impostors_allowed"] == 0 and d["threshold"] >= 0.8  # the look-alike: 0.8
    assert d["dir"] == 1.0
    assert rep["default"]["probes"] == {"genuine": 2, "impostor": 2}
