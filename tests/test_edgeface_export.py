"""The op-by-op EdgeFace ONNX builder: upstream reference vectors, manifest pins, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeface_tools.edgenext_export import build_onnx, describe, load_edgeface_state_dict

from edgeface.errors import ModelError
from edgeface.modelstore import ModelResolver, load_manifest, sha256_file
from edgeface.modelstore.fetch import fetch_model

VARIANTS = {"xs": "edgeface_xs_q.pt", "xxs": "edgeface_xxs_q.pt"}


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def reference(shared_models: Path) -> dict[str, np.ndarray]:
    with np.load(shared_models / "edgeface" / "reference_vectors.npz") as ref:
        return {k: ref[k] for k in ref}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_float_onnx_reproduces_the_reference_vectors(
    variant: str, shared_models: Path, reference: dict[str, np.ndarray]
) -> None:
    model = build_onnx(shared_models / "edgeface" / VARIANTS[variant])
    out = _session(model).run(None, {"input": reference["input"]})[0]
    expected = reference[f"{variant}_q_dequantized_float"]
    assert out.shape == expected.shape == (2, 512)
    assert np.abs(out - expected).max() < 1e-4
    # and it is the network the int8 torch model runs, not a look-alike
    cos = np.sum(out * reference[f"{variant}_q_int8_torch"], 1) / (
        np.linalg.norm(out, axis=1) * np.linalg.norm(reference[f"{variant}_q_int8_torch"], axis=1)
    )
    assert (cos > 0.9).all()


def test_architecture_is_read_from_the_weights(shared_models: Path) -> None:
    xs = describe(load_edgeface_state_dict(shared_models / "edgeface" / VARIANTS["xs"]))
    assert [s.dim for s in xs] == [32, 64, 100, 192]
    assert [s.conv_blocks + s.sdta_blocks for s in xs] == [3, 3, 9, 3]
    assert [s.kernel for s in xs] == [3, 5, 7, 9]
    assert [s.sdta_blocks for s in xs] == [0, 1, 1, 1]
    assert [s.scales for s in xs[1:]] == [2, 3, 4]
    assert [s.pos_embd for s in xs] == [False, True, False, False]
    xxs = describe(load_edgeface_state_dict(shared_models / "edgeface" / VARIANTS["xxs"]))
    assert [s.dim for s in xxs] == [24, 48, 88, 168]


def test_batch_dimension_is_dynamic_and_rows_independent(
    shared_models: Path, reference: dict[str, np.ndarray]
) -> None:
    sess = _session(build_onnx(shared_models / "edgeface" / VARIANTS["xxs"]))
    x = reference["input"]
    batch = np.concatenate([x, x[::-1], x[:1]])
    out = sess.run(None, {"input": batch})[0]
    single = sess.run(None, {"input": x[1:2]})[0]
    assert out.shape == (5, 512)
    assert np.allclose(out[1], single[0], atol=1e-5) and np.allclose(out[2], single[0], atol=1e-5)


def test_fetch_rebuilds_the_pinned_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_models: Path
) -> None:
    monkeypatch.setenv("EDGEFACE_CACHE_DIR", str(tmp_path))
    resolver = ModelResolver(dirs=[tmp_path, shared_models])
    for name in ("edgeface-xs", "edgeface-xxs"):
        built = fetch_model(name, resolver=resolver, cache_dir=tmp_path, log=lambda m: None)
        assert built.parent.parent == tmp_path
        assert sha256_file(built) == load_manifest()[name].sha256


def test_embedder_takes_the_512_d_model_and_its_preprocessing_from_the_manifest(
    models_ready: None, lfw_people: dict[str, list[Path]]
) -> None:
    from edgeface.aligner import align_face
    from edgeface.detector import MTCNNDetector
    from edgeface.embedder import Embedder, EmbedderConfig
    from edgeface.imaging import load_image

    emb = Embedder.from_config(EmbedderConfig(model="edgeface-xs", flip=False))
    assert emb.dim == 512 and emb.model_id == "edgeface-xs-webface12m"
    crop = np.arange(112 * 112 * 3, dtype=np.uint32).reshape(1, 112, 112, 3) % 256
    x = emb.preprocess(crop.astype(np.uint8))
    assert np.allclose(x, crop.transpose(0, 3, 1, 2) / 127.5 - 1, atol=1e-6)
    det = MTCNNDetector()
    people = list(lfw_people.values())[:2]
    faces = []
    for path in (people[0][0], people[0][1], people[1][0]):
        img = load_image(path)
        faces.append(align_face(img, det.detect(img)[0].landmarks).crop)
    v = emb.embed(np.stack(faces))
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # same person well above a different one


def test_a_checkpoint_that_is_not_edgeface_is_refused(tmp_path: Path, shared_models: Path) -> None:
    bad = tmp_path / "truncated.pt"
    bad.write_bytes((shared_models / "edgeface" / VARIANTS["xs"]).read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"truncated\.pt"):
        build_onnx(bad)
    other = shared_models / "minifasnet" / "2.7_80x80_MiniFASNetV2.pth"
    if other.is_file():
        with pytest.raises(ModelError, match="not an EdgeFace"):
            build_onnx(other)


def test_polynomial_erf_graph_for_tflite_matches_and_has_no_erf_op(
    shared_models: Path, reference: dict[str, np.ndarray]
) -> None:
    model = build_onnx(shared_models / "edgeface" / VARIANTS["xs"], erf="polynomial")
    assert "Erf" not in {n.op_type for n in model.graph.node}
    out = _session(model).run(None, {"input": reference["input"]})[0]
    assert np.abs(out - reference["xs_q_dequantized_float"]).max() < 1e-4


def test_edgeface_int8_is_dynamic_on_the_weight_matmuls(models_ready: None) -> None:
    from edgeface_tools.quantize.build import _int8_options
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options

    from edgeface.modelstore import resolve_model

    xs = resolve_model("edgeface-xs")
    opts = _int8_options("edgeface-xs", OnnxInt8Options(), xs)
    assert opts.method == "dynamic" and tuple(opts.op_types) == ("MatMul",)
    # only the 3 attention blocks' activation x activation MatMuls stay float
    assert (
        sorted(n.rsplit(".", 1)[-1] for n in opts.exclude_nodes)
        == ["attn_logits"] * 3 + ["attn_v"] * 3
    )
    # a calibrated (--also) variant keeps its method and keeps fc2 (GELU outputs) float too
    static = _int8_options("edgeface-xs", OnnxInt8Options(method="minmax"), xs, main=False)
    assert static.method == "minmax" and len(static.exclude_nodes) == 6 + 18
    mfn = _int8_options("mobilefacenet", OnnxInt8Options(), resolve_model("mobilefacenet-dyn"))
    assert not mfn.op_types and not mfn.exclude_nodes and mfn.method == "percentile"


def test_dynamic_int8_edgeface_keeps_real_faces_apart(
    models_ready: None, pipeline, lfw_dir: Path, tmp_path: Path
) -> None:
    """The INT8 file ``quantize build`` makes for EdgeFace, on real LFW faces: integer
    MatMuls in the graph, embeddings close to float's, same people still closer than others."""
    import onnx
    from edgeface_tools.quantize.build import _int8_options
    from edgeface_tools.quantize.onnx_int8 import OnnxInt8Options, quantize_onnx_int8

    from edgeface.embedder import Embedder, EmbedderConfig
    from edgeface.imaging import load_image
    from edgeface.modelstore import resolve_model

    xs = resolve_model("edgeface-xs")
    int8 = tmp_path / "edgeface-xs-int8.onnx"
    params = quantize_onnx_int8(
        xs, int8, np.zeros((0, 3, 112, 112), np.float32), _int8_options("edgeface-xs",
        OnnxInt8Options(), xs), progress=False,
    )  # fmt: skip
    assert params["format"] == "dynamic" and params["calibration_inputs"] == 0
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert "DynamicQuantizeLinear" in ops and ops.count("MatMul") == 6  # the attention's
    people = ["Colin_Powell", "Tony_Blair", "George_W_Bush"]
    crops, who = [], []
    for person in people:
        for f in sorted((lfw_dir / "images" / person).glob("*.jpg"))[:3]:
            r = pipeline.best_face(load_image(f))
            assert r is not None, f
            crops.append(r.crop)
            who.append(person)
    x = np.stack(crops)
    e_float = Embedder.from_config(EmbedderConfig(model="edgeface-xs")).embed(x)
    e_int8 = Embedder.from_config(EmbedderConfig(model="edgeface-xs", path=str(int8))).embed(x)
    cos = np.sum(e_float * e_int8, 1)
    print(f"cosine INT8 vs float: min {cos.min():.4f}, mean {cos.mean():.4f}")
    assert cos.min() > 0.98
    sim = e_int8 @ e_int8.T
    same = np.equal.outer(who, who) & ~np.eye(len(who), dtype=bool)
    assert sim[same].min() > sim[~np.equal.outer(who, who)].max()
