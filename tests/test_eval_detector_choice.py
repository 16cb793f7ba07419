"""``edgeface eval lfw/identify --detector-backend``: LFW with a quantized MTCNN cascade."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from edgeface.cli.eval_faces import detector_config as _detector_config
from edgeface.detector import MTCNNDetector
from edgeface.errors import ConfigError
from edgeface.imaging import load_image


def args(**kw) -> argparse.Namespace:
    base = {"detector_backend": "numpy", "detector_models": None, "detector_precision": "int8"}
    return argparse.Namespace(**{**base, **kw})


def test_default_is_the_numpy_cascade() -> None:
    assert _detector_config(args()).backend == "numpy"


def test_a_built_folder_gives_the_cascade_of_that_precision(
    tmp_path: Path, models_ready: None, lfw_dir: Path
) -> None:
    from edgeface.modelstore import resolve_model

    for net in ("pnet", "rnet", "onet"):  # the float ONNX exports, named as build names them
        shutil.copyfile(resolve_model(f"mtcnn-{net}-onnx"), tmp_path / f"mtcnn-{net}-fp32.onnx")
    cfg = _detector_config(
        args(
            detector_backend="onnxruntime", detector_models=str(tmp_path), detector_precision="fp32"
        )
    )
    assert cfg.models["onet"] == str(tmp_path / "mtcnn-onet-fp32.onnx")
    image = load_image(lfw_dir / "images" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    assert len(MTCNNDetector(cfg).detect(image)) == 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"detector_backend": "litert"}, "needs --detector-models"),
        (
            {"detector_backend": "tensorrt", "detector_models": "x"},
            "one of litert, numpy, onnxruntime",
        ),
    ],
)
def test_bad_detector_choices_are_config_errors(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _detector_config(args(**kw))
