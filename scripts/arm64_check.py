"""The core subset that ``scripts/test-arm64.sh`` runs on arm64 (emulated) and on x86, and the
comparison of the two.

Run mode (one part per process, so that a runtime that crashes under emulation, e.g. ONNX
Runtime's SIGSEGV under qemu, takes only its own part down)::

    python scripts/arm64_check.py run PART --out DIR --models DIR [--gallery-from DIR]

Parts: ``detect`` (the 110 images of the MTCNN reference fixture, one detector worker),
``align`` (5-point crops of real LFW faces), ``embed-litert`` / ``embed-onnxruntime``
(MobileFaceNet on those crops), ``embed-edgeface`` (the default embedder, EdgeFace-XS, on
ONNX Runtime), ``gallery`` (encrypt, save, load; and load the gallery the
other architecture wrote, when given), ``door`` (the real DoorDaemon on a replay of an enrolled
person, LiteRT embedder, file relay, audit log).

Compare mode (x86, where pytest and the reference comparator are)::

    python scripts/arm64_check.py compare X86_DIR ARM64_DIR

Needs only numpy, OpenCV, cryptography and the inference runtimes: no pytest, no edgeface
install (the shell script puts the checkout on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FIXTURE = REPO / "tests" / "fixtures" / "mtcnn_reference.json"
PARTS = (
    "detect",
    "align",
    "embed-litert",
    "embed-onnxruntime",
    "embed-edgeface",
    "gallery",
    "door",
)
#: LFW people whose photos are aligned and embedded (the first of each), and the door's
ENROLLED, PROBES = "Colin_Powell", [10, 11, 12, 13, 14, 15]
FACES = ["Abel_Pacheco", "Colin_Powell", "Tony_Blair", "AJ_Cook", "Aaron_Sorkin", "Abba_Eban"]
COSINE_MIN = 0.999


def lfw(name: str, n: int = 1) -> Path:
    return SHARED / "lfw" / "images" / name / f"{name}_{n:04d}.jpg"


def detector(min_face: float | None = None):
    from edgeface.detector import DetectorConfig, MTCNNDetector

    p = json.loads(FIXTURE.read_text())["params"]
    return MTCNNDetector(
        DetectorConfig(
            min_face_size=min_face or p["min_face_size"],
            scale_factor=p["scale_factor"],
            thresholds=(p["threshold_pnet"], p["threshold_rnet"], p["threshold_onet"]),
            nms_pnet_scale=p["nms_pnet1"],
            nms_pnet_all=p["nms_pnet2"],
            nms_rnet=p["nms_rnet"],
            nms_onet=p["nms_onet"],
            workers=1,  # emulated programs cannot start emulated helpers without binfmt
            models={"mtcnn": str(MODELS / "mtcnn_weights.npz")},
        )
    )


def crops() -> np.ndarray:
    from edgeface.aligner import align_face
    from edgeface.imaging import load_image

    det = detector(min_face=40)
    out = []
    for name in FACES:
        img = load_image(lfw(name))
        face = max(det.detect(img), key=lambda f: f.area)
        out.append(align_face(img, face.landmarks).crop)
    return np.stack(out)


def aligned(out: Path) -> np.ndarray:
    """The align part's crops of this run (detection is the slow part under emulation)."""
    done = out / "align.json"
    if done.is_file():
        return np.asarray(json.loads(done.read_text())["crops"], np.uint8)
    return crops()


def embedder(kind: str):
    """``litert`` / ``onnxruntime``: MobileFaceNet on that backend; ``edgeface``: the default
    embedder, EdgeFace-XS float, on ONNX Runtime."""
    from edgeface.embedder import Embedder, EmbedderConfig

    if kind == "edgeface":
        cfg = EmbedderConfig(model="edgeface-xs", path=str(MODELS / "edgeface_xs.onnx"))
        return Embedder.from_config(cfg)
    path = MODELS / ("mobilefacenet-fp32.tflite" if kind == "litert" else "mobilefacenet.onnx")
    cfg = EmbedderConfig(model="mobilefacenet-dyn", path=str(path), backend=kind)
    return Embedder.from_config(cfg)


def part_detect() -> dict:
    from edgeface.imaging import load_image

    det = detector()
    # every image by default; ARM64_DETECT_EVERY=k keeps every k-th (emulated NumPy runs
    # ~150x slower than native: qemu computes floating point in software)
    every = int(os.environ.get("ARM64_DETECT_EVERY", "1"))
    images = json.loads(FIXTURE.read_text())["images"][::every]
    return {
        "faces": {
            r["path"]: [f.to_dict() for f in det.detect(load_image(SHARED / r["path"]))]
            for r in images
        }
    }


def part_align() -> dict:
    return {"crops": crops().tolist()}


def part_embed(backend: str, out: Path) -> dict:
    return {"embeddings": embedder(backend).embed(aligned(out)).tolist()}


def part_gallery(out: Path, other: Path | None, crops_from: Path) -> dict:
    from edgeface.gallery import GalleryFile, create_key_file, load_key_file
    from edgeface.gallery.store import ModelRef, Template

    emb = embedder("litert")
    vectors = emb.embed(aligned(crops_from))
    key_path = out / "gallery.key"
    key_path.unlink(missing_ok=True)
    (out / "gallery.efg").unlink(missing_ok=True)
    gf = GalleryFile(out / "gallery.efg", create_key_file(key_path))
    model = ModelRef.of(emb)
    gf.create(model=model)
    with gf.edit() as g:
        for name, v in zip(FACES, vectors, strict=True):
            g.add_identity(name, [Template(v, 1.0, model)])
    loaded = GalleryFile(out / "gallery.efg", load_key_file(key_path)).load()
    infos = loaded.identities()
    result: dict = {"names": sorted(i.name for i in infos), "roundtrip": len(infos) == len(FACES)}
    for info in infos:
        (t,) = loaded.templates(info.id)
        v = vectors[FACES.index(info.name)]
        result["roundtrip"] &= bool(np.allclose(t.embedding, v, atol=1e-6))
    if other is not None:
        foreign = GalleryFile(other / "gallery.efg", load_key_file(other / "gallery.key")).load()
        result["other_names"] = sorted(i.name for i in foreign.identities())
    return result


def part_door(out: Path) -> dict:
    from edgeface.aligner import align_face
    from edgeface.camera.base import EndOfStream, FrameSource
    from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
    from edgeface.door.audit import AuditLog
    from edgeface.door.config import parse_config
    from edgeface.door.daemon import DoorDaemon
    from edgeface.door.pipeline_identifier import PipelineIdentifier

    sys.path.insert(0, str(REPO / "tests"))  # the door's test doubles live with the tests
    from doubles import FakeClock, ManualTimer

    from edgeface.gallery.store import Gallery, ModelRef, Template
    from edgeface.imaging import load_image
    from edgeface.recognition import FacePipeline

    emb = embedder("litert")
    det = detector(min_face=48)
    model = ModelRef.of(emb)
    gallery = Gallery(model=model)
    enrolled = []
    for n in (1, 2, 3):
        img = load_image(lfw(ENROLLED, n))
        face = max(det.detect(img), key=lambda f: f.area)
        enrolled.append(
            Template(emb.embed(align_face(img, face.landmarks).crop[None])[0], 1.0, model)
        )
    gallery.add_identity(ENROLLED, enrolled)
    cfg = parse_config(
        {
            "camera": {"kind": "images", "path": str(out)},
            "actuator": {"kind": "file", "path": str(out / "relay")},
            "audit": {"path": str(out / "audit.jsonl")},
            "policy": {"min_face_size": 60, "unlock_s": 30.0},
            "recognition": {"max_fps": 100.0, "threshold": 0.4},
            "daemon": {"watchdog": False},
            # the MiniFASNet pair is not part of the emulated subset (its ONNX runs on the
            # same ONNX Runtime as the embedder part); this part checks the daemon
            "liveness": {"required": False},
        }
    )
    ident = PipelineIdentifier(
        FacePipeline(det, emb, min_face_size=60), gallery=gallery, threshold=0.4
    )
    states = []
    inner = ident.identify

    def spy(rgb):
        obs = inner(rgb)
        states.append(read_relay_state(out / "relay"))
        return obs

    ident.identify = spy  # type: ignore[method-assign]
    # the door's clock is scripted (0.2 s a frame): emulated frames take seconds, which must
    # not change what the policy decides
    clock = FakeClock()
    timers = ManualTimer(clock)

    class Replay(FrameSource):
        kind = "replay"
        live = False

        def _open(self) -> None: ...

        def _read(self) -> np.ndarray:
            if self._index >= len(PROBES):
                raise EndOfStream("done")
            clock.advance(0.2)
            timers.fire_due()
            return load_image(lfw(ENROLLED, PROBES[self._index]))

    daemon = DoorDaemon(
        cfg,
        source=Replay(clock=clock),
        identifier=ident,
        actuator=FailSecureActuator(FileRelayActuator(out / "relay"), timer_factory=timers.factory),
        audit=AuditLog(out / "audit.jsonl"),
        clock=clock,
        sleep=clock.sleep,
    )
    code = daemon.run()
    events = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    return {
        "exit_code": code,
        "events": [e["event"] for e in events],
        "unlock_scores": [e.get("score") for e in events if e["event"] == "unlock"],
        "relay_while_running": states,
        "relay_after": read_relay_state(out / "relay"),
    }


def run(args: argparse.Namespace) -> int:
    global MODELS
    MODELS = Path(args.models)
    out = Path(args.out)
    work = out / f"{args.part}.work"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.part == "detect":
        result = part_detect()
    elif args.part == "align":
        result = part_align()
    elif args.part.startswith("embed-"):
        result = part_embed(args.part.removeprefix("embed-"), out)
    elif args.part == "gallery":
        other = Path(args.gallery_from) / "gallery.work" if args.gallery_from else None
        result = part_gallery(work, other, out)
    else:
        result = part_door(work)
    import platform

    result["machine"] = platform.machine()
    result["seconds"] = time.perf_counter() - t0
    (out / f"{args.part}.json").write_text(json.dumps(result))
    print(f"{args.part}: done on {result['machine']} in {result['seconds']:.1f} s")
    return 0


MODELS = Path()


# -- comparison (x86) --------------------------------------------------------------------------


def compare(x86_dir: Path, arm_dir: Path) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from test_mtcnn_reference import _compare, _load_fixture

    failures: list[str] = []

    def load(d: Path, part: str) -> dict | None:
        f = d / f"{part}.json"
        return json.loads(f.read_text()) if f.is_file() else None

    rows = []
    x, a = load(x86_dir, "detect"), load(arm_dir, "detect")
    if a is None:
        failures.append("detect: no arm64 result")
    else:
        if set(a["faces"]) != set(x["faces"]):
            failures.append("detect: the two runs saw different images (ARM64_DETECT_EVERY)")
        fixture = _load_fixture()
        fixture["images"] = [r for r in fixture["images"] if r["path"] in a["faces"]]
        agg = _compare(fixture, a["faces"])
        ok = agg.passes()
        worst = 0.0
        same = sum(len(a["faces"][k]) == len(x["faces"].get(k, [])) for k in a["faces"])
        for k, faces in x["faces"].items():
            if k not in a["faces"]:
                continue
            for fx, fa in zip(faces, a["faces"][k], strict=False):
                worst = max(worst, float(np.abs(np.subtract(fx["box"], fa["box"])).max()))
        rows.append(
            f"detect: arm64 vs reference fixture: {agg.summary().splitlines()[0]}; "
            f"{agg.summary().splitlines()[1]}"
        )
        rows.append(
            f"detect: arm64 vs x86: same face count on {same}/{len(a['faces'])} images, "
            f"largest box difference {worst:.3f} px"
        )
        if not ok or same != len(a["faces"]) or worst > 1.0:
            failures.append("detect")
    x, a = load(x86_dir, "align"), load(arm_dir, "align")
    if a is None:
        failures.append("align: no arm64 result")
    else:
        diff = np.abs(np.asarray(x["crops"], float) - np.asarray(a["crops"], float))
        rows.append(f"align: {len(x['crops'])} crops, largest pixel difference {diff.max():.0f}")
        if diff.max() > 2:
            failures.append("align")
    for backend in ("litert", "onnxruntime", "edgeface"):
        x, a = load(x86_dir, f"embed-{backend}"), load(arm_dir, f"embed-{backend}")
        if a is None:
            rows.append(f"embed {backend}: no arm64 result (see the run's output)")
            if backend == "litert":
                failures.append("embed litert")
            continue
        ex, ea = np.asarray(x["embeddings"]), np.asarray(a["embeddings"])
        cos = np.sum(ex * ea, axis=1) / np.linalg.norm(ex, axis=1) / np.linalg.norm(ea, axis=1)
        rows.append(
            f"embed {backend}: {len(cos)} real faces, cosine arm64 vs x86 min {cos.min():.6f}"
        )
        if cos.min() < COSINE_MIN:
            failures.append(f"embed {backend}")
    x, a = load(x86_dir, "gallery"), load(arm_dir, "gallery")
    if a is None:
        failures.append("gallery: no arm64 result")
    else:
        cross = a.get("other_names") == x["names"]
        rows.append(
            f"gallery: arm64 round trip {'ok' if a['roundtrip'] else 'FAILED'}; "
            f"arm64 opened the x86 gallery: {'ok' if cross else 'FAILED'}"
        )
        if not (a["roundtrip"] and cross):
            failures.append("gallery")
    x, a = load(x86_dir, "door"), load(arm_dir, "door")
    if a is None:
        failures.append("door: no arm64 result")
    else:
        same = a["events"] == x["events"] and a["relay_while_running"] == x["relay_while_running"]
        rows.append(
            f"door: arm64 events {a['events']}, relay after {a['relay_after']}; same as x86: {same}"
        )
        if not same or "unlock" not in a["events"] or a["relay_after"] != "locked":
            failures.append("door")
    for r in rows:
        print("arm64: " + r)
    if failures:
        print("arm64: FAILED: " + ", ".join(failures))
        return 1
    print("arm64: all parts agree with x86")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("part", choices=PARTS)
    r.add_argument("--out", required=True)
    r.add_argument("--models", required=True)
    r.add_argument("--gallery-from", default=None)
    c = sub.add_parser("compare")
    c.add_argument("x86")
    c.add_argument("arm64")
    args = ap.parse_args(argv)
    if args.mode == "run":
        return run(args)
    return compare(Path(args.x86), Path(args.arm64))


if __name__ == "__main__":
    sys.exit(main())
