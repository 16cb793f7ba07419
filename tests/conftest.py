"""Shared fixtures: where the real data and models are, and ready-made pipeline objects.

Data and weights are used in place from ``../shared`` (never copied into the repo). Model
files that are built rather than downloaded (the MTCNN .npz, the dynamic-batch
MobileFaceNet) are built once per machine by ``edgeface models fetch`` into the user cache;
the session fixture below does the same if they are missing, so a bare ``pytest`` works too.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeface.blas_threads import use_one_blas_thread

use_one_blas_thread()  # as the edgeface command runs, before numpy loads

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEFACE_SHARED_DIR", REPO.parent / "shared"))
MTCNN_ONNX = ("mtcnn-pnet-onnx", "mtcnn-rnet-onnx", "mtcnn-onet-onnx")
LIVENESS_ONNX = ("minifasnet-v2", "minifasnet-v1se")
EDGEFACE = ("edgeface-xs", "edgeface-xxs")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (CI runs with ../shared beside the clone)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return _require(SHARED / "models")


@pytest.fixture(scope="session")
def lfw_dir(shared_data: Path) -> Path:
    return _require(shared_data / "lfw")


@pytest.fixture(scope="session")
def models_ready() -> None:
    """Make sure every model the runtime needs resolves with the right sha256."""
    from edgeface.modelstore.fetch import fetch_model

    for name in (
        "mtcnn",
        "mobilefacenet",
        "mobilefacenet-dyn",
        "yunet",
        *MTCNN_ONNX,
        *LIVENESS_ONNX,
        *EDGEFACE,
    ):
        fetch_model(name, log=lambda _msg: None)


@pytest.fixture(scope="session")
def detector(models_ready: None):
    from edgeface.detector import MTCNNDetector

    return MTCNNDetector()


@pytest.fixture(scope="session")
def embedder(models_ready: None):
    from edgeface.embedder import Embedder

    return Embedder.from_config()


@pytest.fixture(scope="session")
def pipeline(detector, embedder):
    from edgeface.recognition import FacePipeline
    from edgeface.recognition.calibration import load_calibration

    calibration = load_calibration(embedding_space=embedder.model_id, flip=embedder.flip)
    return FacePipeline(detector, embedder, calibration)


def lfw_image(lfw_root: Path, name: str, number: int) -> Path:
    return lfw_root / "images" / name / f"{name}_{number:04d}.jpg"


@pytest.fixture(scope="session")
def lfw_people(lfw_dir: Path) -> dict[str, list[Path]]:
    """LFW people with at least 4 images (name -> sorted image paths), for identity tests."""
    people: dict[str, list[Path]] = {}
    for person in sorted((lfw_dir / "images").iterdir()):
        imgs = sorted(person.glob("*.jpg"))
        if len(imgs) >= 4:
            people[person.name] = imgs
    return people


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
