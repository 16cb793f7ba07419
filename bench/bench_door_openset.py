"""Open-set goal at the door: N enrolled dev-LFW people, every photo of every other dev-LFW
person replayed as a jittered attempt; how often the door opens for a stranger and for whom.

The decision path is the daemon's: :class:`PipelineIdentifier` (align, embed, gallery 1:N
with the threshold :class:`ThresholdRule` derives from ``target_fpir`` and the gallery size)
and :class:`DecisionPolicy` (k-of-n). Attempt protocol: one photo = one attempt of ``--frames``
frames at 5 fps, each frame the photo moved by a random similarity transform (shift up to
±4 px, scale ±3 %, rotation ±3°) and brightness ±10 %; a fresh policy per attempt (no
lockout, so every attempt counts). Enrolled people: their first 3 photos are the templates,
every other photo of them is an attempt, which succeeds when the door unlocks for *them*
within the attempt. Enrollment is the real one (:class:`Enroller`: a photo with several
faces or failing the quality gates is skipped, as ``edgeface gallery enroll`` does), over
each person's photos in order until 3 are accepted; the photos it looked at are not replayed.
Probes use the face the LFW label names (the central one). Detection runs once per photo
(cached with ``--faces-cache``); each
jittered frame gets that face moved by the same transform (real pixels are warped, aligned
and embedded per frame).

    python bench/bench_door_openset.py --faces-cache /work/cache/12/lfw_faces.npz \\
        [--enrolled 100] [--target-fpir 1e-4] [--out out/door_openset.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeface.blas_threads import use_one_blas_thread

use_one_blas_thread()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def detect_all(keys, min_face: float, cache: Path | None) -> dict[str, np.ndarray]:
    from edgeface.detector import DetectorConfig, MTCNNDetector
    from edgeface.evaluation import lfw
    from edgeface.imaging import load_image
    from edgeface.recognition.pipeline import select_face

    if cache is not None and cache.is_file():
        with np.load(cache) as d:
            if len(d["score"]) == len(keys) and str(d.get("select", "")) == "central":
                return {k: d[k] for k in d.files}
    det = MTCNNDetector(DetectorConfig(min_face_size=max(12.0, 0.8 * min_face)))
    box = np.zeros((len(keys), 4), np.float32)
    score = np.zeros(len(keys), np.float32)
    marks = np.zeros((len(keys), 5, 2), np.float32)
    for i, key in enumerate(keys):
        img = load_image(lfw.image_path(LFW, key))
        # the face the LFW label names is the central one (photos often show several people)
        face = select_face(det.detect(img), img.shape, "central")
        if face is not None:
            box[i], score[i], marks[i] = face.box, face.score, face.landmarks
        if i % 500 == 0:
            print(f"detect {i}/{len(keys)}", file=sys.stderr, flush=True)
    out = {"box": box, "score": score, "landmarks": marks, "select": np.array("central")}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


class ReplayDetector:
    """The photo's detected face, moved by the frame's jitter transform."""

    def __init__(self) -> None:
        self.faces: list = []

    def detect(self, rgb: np.ndarray) -> list:
        return self.faces


def jitter(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    angle, scale = rng.uniform(-3, 3), rng.uniform(0.97, 1.03)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += rng.uniform(-4, 4, 2)
    out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    gain = rng.uniform(0.9, 1.1)
    return np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8), m


def moved_face(box, score, landmarks, m):
    from edgeface.types import Face

    pts = np.hstack([landmarks, np.ones((5, 1), np.float32)]) @ m.T
    corners = np.array([[box[0], box[1], 1], [box[2], box[3], 1]], np.float32) @ m.T
    x1, y1 = corners.min(axis=0)
    x2, y2 = corners.max(axis=0)
    return Face((float(x1), float(y1), float(x2), float(y2)), float(score), pts.astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--enrolled", type=int, default=100)
    ap.add_argument("--templates", type=int, default=3)
    ap.add_argument("--target-fpir", type=float, default=1e-4)
    ap.add_argument("--threshold", type=float, help="pin a threshold instead")
    ap.add_argument("--frames", type=int, default=5, help="frames per attempt (policy n)")
    ap.add_argument("--min-face-size", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="at most this many stranger photos (quick runs)")
    ap.add_argument("--faces-cache", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from edgeface.door.config import PolicyConfig, RecognitionConfig
    from edgeface.door.pipeline_identifier import PipelineIdentifier
    from edgeface.door.policy import DecisionPolicy
    from edgeface.door.threshold import ThresholdRule
    from edgeface.evaluation import lfw
    from edgeface.gallery.enroll import Enroller
    from edgeface.gallery.store import Gallery, ModelRef
    from edgeface.imaging import load_image
    from edgeface.recognition import FacePipeline

    t0 = time.perf_counter()
    keys = lfw.all_images(LFW)
    faces = detect_all(keys, args.min_face_size, args.faces_cache)
    found = faces["score"] > 0
    by: dict[str, list[int]] = {}
    for i, (name, _n) in enumerate(keys):
        if found[i]:
            by.setdefault(name, []).append(i)
    rng = np.random.default_rng(args.seed)
    eligible = sorted(n for n, idx in by.items() if len(idx) > args.templates)
    pipeline = FacePipeline.from_config()
    embedder = pipeline.embedder
    model = ModelRef.of(embedder)
    enroller = Enroller(pipeline, max_templates=args.templates)
    gallery = Gallery(dim=128, max_templates=5, model=model)
    ids: dict[str, str] = {}
    attempts_of: dict[str, list[int]] = {}
    tried: list[str] = []  # people whose photos gave too few templates: strangers after all
    # people in a seeded random order; the first whose photos give enough templates enroll
    for name in (eligible[j] for j in rng.permutation(len(eligible))):
        if len(ids) == args.enrolled:
            break
        accepted, looked = [], 0
        for i in by[name]:
            if len(accepted) == args.templates:
                break
            looked += 1
            c = enroller.assess_file(lfw.image_path(LFW, keys[i]))
            if c.template is not None:
                accepted.append(c.template)
        if len(accepted) < args.templates or looked == len(by[name]):
            tried.append(name)
            continue
        ids[name] = gallery.add_identity(name.replace("_", " "), accepted).id
        attempts_of[name] = by[name][looked:]
    rc = RecognitionConfig(
        threshold=args.threshold, target_fpir=None if args.threshold else args.target_fpir
    )
    choice = ThresholdRule(rc, pipeline.calibration).choose(len(gallery))
    print(choice.describe())
    detector = ReplayDetector()
    seen: list[np.ndarray] = []  # the embedding of each frame, for the aggregation variant

    class Recording:
        model_id, model_sha256, flip = embedder.model_id, embedder.model_sha256, embedder.flip

        def embed(self, crops: np.ndarray) -> np.ndarray:
            out = embedder.embed(crops)
            seen.append(out[0])
            return out

    ident = PipelineIdentifier(
        FacePipeline(detector, Recording(), min_face_size=args.min_face_size),
        gallery=gallery,
        threshold=choice.threshold,
    )
    policy_cfg = PolicyConfig(n=args.frames, min_face_size=args.min_face_size)

    def attempt(i: int) -> tuple[str | None, list[float], int, str | None]:
        """Replay photo ``i``: the identity the policy unlocked for (or None), frame scores,
        usable frames, and the identity the mean embedding of the first k usable frames
        matches at the same threshold (the aggregation variant, measured alongside)."""
        img = load_image(lfw.image_path(LFW, keys[i]))
        policy = DecisionPolicy(policy_cfg, clock=lambda: 0.0)
        t, scores, usable, embs = 1000.0, [], 0, []
        who = None
        for _ in range(args.frames):
            frame, m = jitter(img, rng)
            detector.faces = [moved_face(faces["box"][i], faces["score"][i],
                                         faces["landmarks"][i], m)]  # fmt: skip
            seen.clear()
            obs = ident.identify(frame)
            if policy.usable(obs):
                usable += 1
                embs.append(seen[-1])
            scores.append(obs.score)
            d = policy.observe(obs, t)
            t += 0.2
            if d.unlocks and who is None:
                who = d.identity_id
        agg = None
        if len(embs) >= policy_cfg.k:
            mean = np.mean(embs[: policy_cfg.k], axis=0)
            dec = gallery.identify(mean / np.linalg.norm(mean), choice.threshold, k=1)
            agg = dec.best.identity_id if dec.known and dec.best else None
        return who, scores, usable, agg

    enrolled = sorted(ids)
    enrolled_set = set(enrolled)
    strangers = [i for i in range(len(keys)) if found[i] and keys[i][0] not in enrolled_set]
    if args.limit:
        strangers = strangers[: args.limit]
    s_unlocks, s_frames, s_frames_above, s_usable, worst, s_agg = 0, 0, 0, 0, [], 0
    for j, i in enumerate(strangers):
        who, scores, usable, agg = attempt(i)
        s_unlocks += who is not None
        s_agg += agg is not None
        s_frames += len(scores)
        s_usable += usable
        s_frames_above += sum(s >= choice.threshold for s in scores)
        worst.append((max(scores), keys[i]))
        if who is not None:
            print(f"STRANGER UNLOCKED: {keys[i]} as {gallery.info(who).name}", flush=True)
        if j % 1000 == 0:
            print(f"strangers {j}/{len(strangers)}", file=sys.stderr, flush=True)
    g_attempts, g_ok, g_wrong, g_usable_frames, g_frames, g_agg = 0, 0, 0, 0, 0, 0
    for name in enrolled:
        for i in attempts_of[name]:
            who, scores, usable, agg = attempt(i)
            g_agg += agg == ids[name]
            g_attempts += 1
            g_ok += who == ids[name]
            g_wrong += who is not None and who != ids[name]
            g_usable_frames += usable
            g_frames += len(scores)
    worst.sort(reverse=True)
    report = {
        "enrolled": len(gallery),
        "not_enrolled_too_few_usable_photos": len(tried),
        "templates_per_person": args.templates,
        "threshold": choice.fields() | {"describe": choice.describe()},
        "policy": {"k": policy_cfg.k, "n": policy_cfg.n, "min_face_size": args.min_face_size},
        "strangers": {
            "people": len({keys[i][0] for i in strangers}),
            "attempts": len(strangers),
            "frames": s_frames,
            "usable_frames": s_usable,
            "frames_above_threshold": s_frames_above,
            "unlocks": s_unlocks,
            "mean_embedding_matches": s_agg,
            "highest_scores": [[round(float(s), 4), f"{k[0]}_{k[1]:04d}"] for s, k in worst[:5]],
        },
        "enrolled_attempts": {
            "attempts": g_attempts,
            "unlocked_as_self": g_ok,
            "unlocked_as_someone_else": g_wrong,
            "tar": round(g_ok / max(g_attempts, 1), 4),
            "frames": g_frames,
            "usable_frames": g_usable_frames,
            "mean_embedding_matches_self": g_agg,
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    s, g = report["strangers"], report["enrolled_attempts"]
    print(f"| {report['enrolled']} enrolled, threshold {choice.threshold:.4f} | value |")
    print("|---|---|")
    print(f"| stranger attempts ({s['people']} people, {s['frames']} frames) | {s['attempts']} |")
    print(f"| stranger unlocks | {s['unlocks']} |")
    print(f"| stranger frames above threshold | {s['frames_above_threshold']} |")
    print(f"| enrolled attempts | {g['attempts']} |")
    print(f"| enrolled unlocked as themselves | {g['unlocked_as_self']} ({100 * g['tar']:.2f} %) |")
    print(f"| enrolled unlocked as someone else | {g['unlocked_as_someone_else']} |")
    print(f"| mean embedding of k frames (variant): strangers matched | {s_agg} |")
    print(f"| mean embedding of k frames (variant): enrolled matched as self | {g_agg} "
          f"({100 * g_agg / max(g['attempts'], 1):.2f} %) |")  # fmt: skip
    print(f"highest stranger frame scores: {s['highest_scores']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
