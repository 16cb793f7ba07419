"""MobileFaceNet embedder: unit-length output, batch invariance, flip, bad models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeface.aligner import align_face
from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.errors import ImageError, ModelError
from edgeface.imaging import load_image
from edgeface.modelstore import resolve_model

PEOPLE = ["Tony_Blair", "Hugo_Chavez", "Jacques_Chirac", "Colin_Powell"]


@pytest.fixture(scope="module")
def crops(lfw_dir: Path, detector) -> tuple[np.ndarray, list[str]]:
    out, labels = [], []
    for name in PEOPLE:
        for n in (1, 2):
            img = load_image(lfw_dir / "images" / name / f"{name}_{n:04d}.jpg")
            face = detector.detect(img)[0]
            out.append(align_face(img, face.landmarks).crop)
            labels.append(name)
    return np.stack(out), labels


def test_embeddings_are_unit_length_and_separate_people(embedder: Embedder, crops) -> None:
    x, labels = crops
    e = embedder.embed(x)
    assert e.shape == (len(x), embedder.dim) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sims = e @ e.T
    same = np.array([[a == b for b in labels] for a in labels]) & ~np.eye(len(labels), dtype=bool)
    diff = np.array([[a != b for b in labels] for a in labels])
    assert sims[same].min() > sims[diff].max(), "every same-person pair beats every impostor pair"


def test_batch_size_does_not_change_embeddings(embedder: Embedder, crops) -> None:
    x, _ = crops
    together = embedder.embed(x)
    one_by_one = np.concatenate([embedder.embed(c) for c in x])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_fixed_batch_model_gives_the_same_result(crops) -> None:
    fixed = Embedder.from_config(EmbedderConfig(model="mobilefacenet"))
    dynamic = Embedder.from_config(EmbedderConfig(model="mobilefacenet-dyn"))
    assert fixed.max_batch == 1 and dynamic.max_batch > 1
    assert fixed.model_id == dynamic.model_id  # same embedding space
    np.testing.assert_allclose(fixed.embed(crops[0]), dynamic.embed(crops[0]), atol=1e-5)


def test_flip_averaging_changes_little_and_stays_unit(crops) -> None:
    plain = Embedder.from_config(EmbedderConfig(flip=False))
    flipped = Embedder.from_config(EmbedderConfig(flip=True))
    assert flipped.flip and Embedder.from_config().flip  # on by default
    a, b = plain.embed(crops[0]), flipped.embed(crops[0])
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert np.all(cos > 0.9) and np.all(cos < 0.99999)


def test_empty_batch_and_wrong_crop_size(embedder: Embedder) -> None:
    assert embedder.embed(np.empty((0, 112, 112, 3), np.uint8)).shape == (0, embedder.dim)
    with pytest.raises(ImageError, match="112, 112, 3"):
        embedder.embed(np.zeros((2, 96, 112, 3), np.uint8))


def test_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(resolve_model("mobilefacenet").read_bytes()[:5000])
    with pytest.raises(ModelError, match="cannot load"):
        Embedder.from_config(EmbedderConfig(path=str(bad)))


def _relu_model(path: Path, shape: list[int]) -> Path:
    """A valid ONNX model (image in, same image out) that is not a face embedder."""
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [inp], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_model_with_wrong_input_shape_is_refused(tmp_path: Path) -> None:
    path = _relu_model(tmp_path / "wrong.onnx", [1, 3, 64, 64])
    with pytest.raises(ModelError, match="input shape"):
        Embedder.from_config(EmbedderConfig(path=str(path)))


def test_model_with_wrong_output_is_refused(tmp_path: Path) -> None:
    path = _relu_model(tmp_path / "image_to_image.onnx", [1, 3, 112, 112])
    with pytest.raises(ModelError, match="not one"):
        Embedder.from_config(EmbedderConfig(path=str(path)))
