"""Real conversion paths for MobileFaceNet: INT8 ONNX (QDQ) and FP32/FP16/INT8 TFLite.

Calibration uses real LFW photos of people who appear in no dev pair, turned into aligned
faces by our own detector and aligner; accuracy is checked on real LFW faces. Small sizes
keep this under a few minutes on 2 cores; the full-size numbers are in docs/quantization.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgeface_tools.quantize.artifacts import MANIFEST_NAME, ArtifactDir
from edgeface_tools.quantize.build import BuildOptions, build_embedder
from edgeface_tools.quantize.calibration import build_calibration_set
from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

from edgeface.aligner import align_face
from edgeface.backends import open_session
from edgeface.embedder import Embedder
from edgeface.imaging import load_image
from edgeface.modelstore import load_manifest, resolve_model, sha256_file
from edgeface.modelstore.manifest import get_entry

pytestmark = pytest.mark.slow
CALIB_FACES = 64


def _pair_people(lfw_dir: Path) -> set[str]:
    from edgeface.evaluation.lfw import read_pairs

    pairs = read_pairs(lfw_dir / "pairs_dev.txt")
    return {k[0] for k in pairs.left + pairs.right}


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Path:
    """Links to LFW photos of people in no dev pair (calibration never sees test faces)."""
    d = tmp_path_factory.mktemp("calib")
    excluded = _pair_people(lfw_dir)
    people = [p for p in sorted((lfw_dir / "images").iterdir()) if p.name not in excluded]
    for person in people[: CALIB_FACES * 2]:
        first = sorted(person.glob("*.jpg"))[0]
        (d / first.name).symlink_to(first)
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, calib_dir: Path, models_ready: None):
    cache = tmp_path_factory.mktemp("cache")
    calib = build_calibration_set(
        calib_dir, count=CALIB_FACES, min_faces=32, cache_dir=cache, progress=False
    )
    out = ArtifactDir(tmp_path_factory.mktemp("artifacts"))
    opts = BuildOptions(onnx=OnnxInt8Options(method="minmax"), tflite_io="int8")
    names = build_embedder(out, calib, opts, log=lambda _m: None, progress=False)
    return out, names, calib, cache


@pytest.fixture(scope="module")
def test_faces(lfw_dir: Path, detector) -> np.ndarray:
    """Aligned crops of ~150 real LFW pair images (our detector + aligner)."""
    from edgeface.evaluation.lfw import image_path, read_pairs

    keys = read_pairs(lfw_dir / "pairs_dev.txt").images()[::30]
    crops = []
    for key in keys:
        img = load_image(image_path(lfw_dir / "images", key))
        faces = detector.detect(img)
        if faces:
            crops.append(align_face(img, max(faces, key=lambda f: f.area).landmarks).crop)
    assert len(crops) >= 120
    return np.stack(crops)


def _embedder(path: Path, backend: str) -> Embedder:
    session = open_session(path, backend, threads=2)
    prep = get_entry("mobilefacenet-dyn").preprocessing
    return Embedder(
        session, preprocessing=prep, model_id="mobilefacenet", model_sha256="", flip=False
    )


def test_calibration_set_is_real_aligned_faces_and_cached(built, calib_dir: Path) -> None:
    _, _, calib, cache = built
    assert calib.faces.shape == (CALIB_FACES, 112, 112, 3) and calib.faces.dtype == np.uint8
    assert calib.description["faces"] == CALIB_FACES
    assert calib.faces.std() > 30  # real texture, not blank fallbacks
    cached = list(cache.glob("faces-*.npy"))
    assert len(cached) == 1
    again = build_calibration_set(
        calib_dir, count=CALIB_FACES, min_faces=32, cache_dir=cache, cropper=lambda _i: []
    )  # the cropper would find nothing: a hit must come from the cache
    assert again.description["cached"] is True
    np.testing.assert_array_equal(again.faces, calib.faces)


def test_manifest_records_every_artifact(built) -> None:
    out, names, _, _ = built
    assert names == [
        "mobilefacenet-int8.onnx",
        "mobilefacenet-fp32.tflite",
        "mobilefacenet-fp16.tflite",
        "mobilefacenet-int8.tflite",
    ]
    manifest = json.loads((out.root / MANIFEST_NAME).read_text())
    assert {"onnx", "onnxruntime", "onnx2tf", "tensorflow"} <= set(manifest["tools"])
    # the build must not touch its source (onnx2tf rewrites its input file in place)
    source_sha = sha256_file(resolve_model("mobilefacenet-dyn"))
    assert source_sha == load_manifest()["mobilefacenet-dyn"].sha256
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    for name in names:
        rec = by_name[name]
        assert rec["sha256"] == sha256_file(out.root / name)
        assert rec["size"] == (out.root / name).stat().st_size
        assert rec["source_sha256"] == source_sha
        assert rec["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    onnx_rec = by_name["mobilefacenet-int8.onnx"]
    assert onnx_rec["quantization"]["method"] == "minmax"
    assert onnx_rec["quantization"]["per_channel"] is True
    assert onnx_rec["calibration"]["faces"] == CALIB_FACES
    assert by_name["mobilefacenet-int8.tflite"]["quantization"]["io_type"] == "int8"
    assert not list(out.root.glob(".*"))  # no staging leftovers


def test_int8_files_are_small(built) -> None:
    out, _, _, _ = built
    assert (out.root / "mobilefacenet-int8.onnx").stat().st_size <= 1_300_000
    assert (out.root / "mobilefacenet-int8.tflite").stat().st_size <= 1_300_000
    assert (out.root / "mobilefacenet-fp16.tflite").stat().st_size < 2_100_000


@pytest.mark.parametrize(
    ("name", "backend", "min_mean", "min_p1"),
    [
        ("mobilefacenet-int8.onnx", "onnxruntime", 0.98, 0.95),
        ("mobilefacenet-fp32.tflite", "litert", 0.9999, 0.9999),
        ("mobilefacenet-fp16.tflite", "litert", 0.999, 0.998),
        ("mobilefacenet-int8.tflite", "litert", 0.98, 0.95),
    ],
)
def test_quantized_embeddings_match_float(
    built, test_faces, name: str, backend: str, min_mean: float, min_p1: float
) -> None:
    out, _, _, _ = built
    ref = _embedder(resolve_model("mobilefacenet-dyn"), "onnxruntime").embed(test_faces)
    emb = _embedder(out.root / name, backend)
    assert emb.session.info.input_layout == ("NCHW" if backend == "onnxruntime" else "NHWC")
    got = emb.embed(test_faces)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = np.einsum("ij,ij->i", got, ref)
    assert cos.mean() >= min_mean, (name, float(cos.mean()))
    assert np.percentile(cos, 1) >= min_p1, (name, float(np.percentile(cos, 1)))
    # identities stay apart: the quantized model's nearest neighbour of each face is the same
    # face under the float model far more often than chance
    nn = np.argmax(got @ ref.T, axis=1)
    assert np.mean(nn == np.arange(len(got))) >= 0.98


def test_int8_tflite_is_fully_integer(built) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out, _, _, _ = built
    it = Interpreter(model_path=str(out.root / "mobilefacenet-int8.tflite"))
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    float_tensors = [
        t["name"]
        for t in it.get_tensor_details()
        if t["dtype"] == np.float32 and len(t["shape"]) == 4
    ]
    assert float_tensors == []  # no float feature maps: every op runs in int8


def test_bench_times_every_variant_and_picks_within_budget(built) -> None:
    from edgeface_tools.quantize.bench import bench_embedders

    out, names, _, _ = built
    budget = {n: n.endswith(".tflite") for n in names}  # pretend only TFLite met the goals
    result = bench_embedders(out.root, runs=3, threads=1, budget=budget)
    rows = {r["variant"]: r for r in result["variants"]}
    assert set(rows) == {"float onnx", *names}
    assert all(r["ms_per_face_b1"] > 0 for r in rows.values())
    assert rows["mobilefacenet-int8.onnx"]["within_budget"] is False
    pick = result["fastest_within_budget"]
    assert pick["variant"] != "mobilefacenet-int8.onnx"
    eligible = [r for r in rows.values() if r["within_budget"]]
    assert pick["ms_per_face_b1"] == min(r["ms_per_face_b1"] for r in eligible)
