"""Open-set identification on dev LFW, as a door meets it: many people enrolled, many not.

Protocol (:func:`make_splits`): the people of the dev pairs file with enough photos are the
candidates for enrollment; each repetition enrolls ``gallery_size`` of them at random (seeded)
with up to ``templates`` photos each, probes with their other photos (genuine) and with every
photo of every dev person not enrolled (impostors). The dev images of people in no pair are
the *cohort*: used only for score normalization, never as probes. Thresholds are set on the
impostor probes for a false-positive identification rate (FPIR: a stranger matched to anyone)
and the detection and identification rate (DIR: right person, above the threshold) is read at
that threshold.

Variants (:data:`VARIANTS`), each a decision score per (probe, identity):

* ``default``: best cosine over the identity's templates, the best identity wins;
* ``znorm``: per identity, (score - mean) / std of that identity's scores against the cohort;
* ``tnorm``: per probe, (score - mean) / std of the probe's scores against the cohort;
* ``margin-M``: default, and the best identity must beat the second by at least M;

and for attempts of ``k`` frames of one person (:func:`attempt_report`; the frames are ``k``
different photos of that person, so this favours aggregation more than a replayed photo would):
``votes`` (every frame must match the same identity: its score is the minimum over frames),
``mean-score`` (mean over frames of the identity's score) and ``mean-embedding`` (the frames'
embeddings averaged, then scored once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FPIRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


@dataclass(frozen=True)
class Split:
    """One repetition: template rows per enrolled identity, genuine and impostor probe rows."""

    templates: list[np.ndarray]  # per identity: row indices into the embeddings
    genuine: np.ndarray  # probe rows of enrolled people
    genuine_label: np.ndarray  # their identity index (into templates)
    impostor: np.ndarray  # probe rows of people not enrolled
    impostor_person: np.ndarray  # a person index per impostor row (for k-frame attempts)


def people(keys: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, (name, _number) in enumerate(keys):
        out.setdefault(name, []).append(i)
    for name in out:
        out[name].sort(key=lambda i: keys[i][1])
    return out


def make_splits(
    keys: Sequence[tuple[str, int]],
    pair_people: set[str],
    *,
    gallery_size: int = 100,
    templates: int = 3,
    repeats: int = 20,
    seed: int = 0,
) -> tuple[list[Split], np.ndarray]:
    """Random enrolled/unenrolled splits of the pair people, and the cohort rows."""
    by = people(keys)
    cohort = np.array(sorted(i for n, idx in by.items() if n not in pair_people for i in idx))
    names = sorted(n for n in by if n in pair_people)
    eligible = [n for n in names if len(by[n]) >= 2]
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(repeats):
        chosen = set(rng.choice(len(eligible), size=gallery_size, replace=False).tolist())
        enrolled = [eligible[i] for i in sorted(chosen)]
        temps, gen, gen_lab = [], [], []
        for label, n in enumerate(enrolled):
            idx = by[n]
            t = min(templates, len(idx) - 1)
            temps.append(np.array(idx[:t]))
            gen.extend(idx[t:])
            gen_lab.extend([label] * (len(idx) - t))
        enrolled_set = set(enrolled)
        imp, imp_person = [], []
        for p, n in enumerate(names):
            if n not in enrolled_set:
                imp.extend(by[n])
                imp_person.extend([p] * len(by[n]))
        splits.append(
            Split(temps, np.array(gen), np.array(gen_lab), np.array(imp), np.array(imp_person))
        )
    return splits, cohort


def identity_scores(emb: np.ndarray, rows: np.ndarray, templates: list[np.ndarray]) -> np.ndarray:
    """(len(rows), N) best cosine of each probe against each identity's templates."""
    out = np.full((len(rows), len(templates)), -np.inf, np.float32)
    probes = emb[rows]
    for j, t in enumerate(templates):
        out[:, j] = (probes @ emb[t].T).max(axis=1)
    return out


def normalizer(variant: str, emb: np.ndarray, split: Split, cohort: np.ndarray):
    """A function (probe rows or embeddings, raw scores) -> normalized scores."""
    if variant == "znorm":
        c = identity_scores(emb, cohort, split.templates)  # (C, N)
        mu, sd = c.mean(axis=0), c.std(axis=0) + 1e-6
        return lambda probes, s: (s - mu) / sd
    if variant == "tnorm":
        ce = emb[cohort]

        def tnorm(probes: np.ndarray, s: np.ndarray) -> np.ndarray:
            c = probes @ ce.T
            return (s - c.mean(axis=1, keepdims=True)) / (c.std(axis=1, keepdims=True) + 1e-6)

        return tnorm
    return lambda probes, s: s


def _top2(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    best = np.argmax(s, axis=1)
    s1 = s[np.arange(len(s)), best]
    if s.shape[1] < 2:
        return best, s1, np.full_like(s1, -np.inf)
    s2 = np.partition(s, -2, axis=1)[:, -2]
    return best, s1, s2


@dataclass
class VariantResult:
    """Decision scores pooled over the repetitions."""

    genuine_score: list[np.ndarray] = field(default_factory=list)
    genuine_correct: list[np.ndarray] = field(default_factory=list)
    impostor_score: list[np.ndarray] = field(default_factory=list)

    def add(self, gs: np.ndarray, gc: np.ndarray, imp: np.ndarray) -> None:
        self.genuine_score.append(gs)
        self.genuine_correct.append(gc)
        self.impostor_score.append(imp)

    def dir_at(self, fpirs: Sequence[float] = FPIRS) -> dict[str, dict[str, float]]:
        gs = np.concatenate(self.genuine_score)
        gc = np.concatenate(self.genuine_correct)
        imp = np.sort(np.concatenate(self.impostor_score))[::-1]
        out = {}
        for f in fpirs:
            allowed = int(np.floor(f * len(imp) + 1e-9))
            t = float(np.nextafter(imp[allowed], np.inf)) if allowed < len(imp) else -np.inf
            out[f"{f:.0e}"] = {
                "dir": round(float(np.mean(gc & (gs >= t))), 5),
                "threshold": round(t, 4),
                "impostors_allowed": allowed,
            }
        return out

    def counts(self) -> dict[str, int]:
        return {
            "genuine": int(sum(len(x) for x in self.genuine_score)),
            "impostor": int(sum(len(x) for x in self.impostor_score)),
        }


def frame_report(
    emb: np.ndarray,
    splits: Sequence[Split],
    cohort: np.ndarray,
    *,
    margins: Sequence[float] = (0.03, 0.05, 0.1),
) -> dict[str, dict[str, object]]:
    """DIR at FPIR for single probes, per variant."""
    results: dict[str, VariantResult] = {}
    for split in splits:
        for variant in ("default", "znorm", "tnorm"):
            norm = normalizer(variant, emb, split, cohort)
            g = norm(emb[split.genuine], identity_scores(emb, split.genuine, split.templates))
            i = norm(emb[split.impostor], identity_scores(emb, split.impostor, split.templates))
            gb, g1, g2 = _top2(g)
            _, i1, i2 = _top2(i)
            results.setdefault(variant, VariantResult()).add(g1, gb == split.genuine_label, i1)
            if variant != "default":
                continue
            for m in margins:
                # a failed margin is a rejection whatever the score: score -inf
                gm = np.where(g1 - g2 >= m, g1, -np.inf)
                im = np.where(i1 - i2 >= m, i1, -np.inf)
                results.setdefault(f"margin-{m:g}", VariantResult()).add(
                    gm, gb == split.genuine_label, im
                )
    return {k: {"dir_at_fpir": v.dir_at(), "probes": v.counts()} for k, v in results.items()}


def _groups(rows: np.ndarray, owner: np.ndarray, k: int) -> list[np.ndarray]:
    """Consecutive, non-overlapping groups of ``k`` rows of the same owner."""
    out = []
    for o in np.unique(owner):
        r = rows[owner == o]
        out.extend(r[a : a + k] for a in range(0, len(r) - k + 1, k))
    return out


def attempt_report(
    emb: np.ndarray, splits: Sequence[Split], *, k: int = 3
) -> dict[str, dict[str, object]]:
    """DIR at FPIR per *attempt* of ``k`` frames: independent votes vs aggregation."""
    results: dict[str, VariantResult] = {}
    for split in splits:
        gen = _groups(split.genuine, split.genuine_label, k)
        imp = _groups(split.impostor, split.impostor_person, k)
        if not gen or not imp:
            continue
        label_of = dict(zip(split.genuine.tolist(), split.genuine_label.tolist(), strict=True))
        glab = np.array([label_of[int(g[0])] for g in gen])
        for name, groups in (("g", gen), ("i", imp)):
            flat = np.concatenate(groups)
            s = identity_scores(emb, flat, split.templates).reshape(len(groups), k, -1)
            mean_emb = emb[flat].reshape(len(groups), k, -1).mean(axis=1)
            mean_emb /= np.linalg.norm(mean_emb, axis=1, keepdims=True)
            per = {
                "votes": s.min(axis=1),
                "mean-score": s.mean(axis=1),
                "mean-embedding": np.stack(
                    [(mean_emb @ emb[t].T).max(axis=1) for t in split.templates], axis=1
                ),
            }
            for variant, sc in per.items():
                best = np.argmax(sc, axis=1)
                top = sc[np.arange(len(sc)), best]
                r = results.setdefault(variant, VariantResult())
                if name == "g":
                    r.genuine_score.append(top)
                    r.genuine_correct.append(best == glab)
                else:
                    r.impostor_score.append(top)
    return {k_: {"dir_at_fpir": v.dir_at(), "attempts": v.counts()} for k_, v in results.items()}


def format_table(title: str, report: dict[str, dict[str, object]], unit: str) -> str:
    """A markdown table: variant, DIR at each FPIR (threshold), and how many probes."""
    fpirs = [f"{f:.0e}" for f in FPIRS]
    head = f"| {title} | " + " | ".join(f"DIR @ FPIR {f}" for f in fpirs)
    lines = [head + f" | genuine / impostor {unit} |", "|---" * (len(fpirs) + 2) + "|"]
    for variant, r in report.items():
        d = r["dir_at_fpir"]
        c = r[unit]
        cells = " | ".join(
            f"{100 * d[f]['dir']:.2f} % ({d[f]['threshold']:.3f})"  # type: ignore[index]
            for f in fpirs
        )
        lines.append(f"| {variant} | {cells} | {c['genuine']} / {c['impostor']} |")  # type: ignore[index]
    return "\n".join(lines)
