"""The torch-free checkpoint reader on the real upstream files, and on files it must refuse."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgeface_tools.torch_checkpoint import CheckpointError, QuantizedArray, state_dict


@pytest.fixture(scope="module")
def models_dir(shared_models: Path) -> Path:
    return shared_models


def test_legacy_minifasnet_checkpoint_reads_as_float_arrays(models_dir: Path) -> None:
    sd = state_dict(models_dir / "minifasnet" / "2.7_80x80_MiniFASNetV2.pth", "module.")
    assert sd["conv1.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["conv1.conv.weight"].dtype == np.float32
    assert all(not k.startswith("module.") for k in sd)
    assert np.isfinite(sd["conv1.bn.weight"]).all()


def test_zip_edgeface_checkpoint_keeps_quantized_linear_weights(models_dir: Path) -> None:
    sd = state_dict(models_dir / "edgeface" / "edgeface_xs_q.pt", "model.")
    weight, bias = sd["stages.0.blocks.0.mlp.fc1._packed_params._packed_params"]
    assert isinstance(weight, QuantizedArray)
    assert weight.values.dtype == np.int8 and weight.values.shape == (128, 32)
    assert bias.shape == (128,)
    real = weight.dequantize()
    assert real.dtype == np.float32
    assert np.allclose(real, (weight.values.astype(np.float32) - weight.zero_point) * weight.scale)


def test_forbidden_global_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError, match="forbidden global"):
        state_dict(path)


def test_truncated_legacy_file_is_refused(models_dir: Path, tmp_path: Path) -> None:
    raw = (models_dir / "minifasnet" / "2.7_80x80_MiniFASNetV2.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError):
        state_dict(path)


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.pth"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a pickle")
    with pytest.raises(CheckpointError):
        state_dict(path)
