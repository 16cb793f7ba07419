"""EdgeFace-XS is the default embedder; galleries of the old default are refused with a way out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.embedder import Embedder, EmbedderConfig
from edgeface.gallery import Gallery, ModelMismatchError, ModelRef, Template
from edgeface.modelstore import load_manifest
from edgeface.recognition.calibration import load_calibration


def test_default_is_edgeface_xs_and_mobilefacenet_stays_selectable(models_ready: None) -> None:
    assert EmbedderConfig().model == "edgeface-xs"
    default = Embedder.from_config()
    old = Embedder.from_config(EmbedderConfig(model="mobilefacenet-dyn"))
    assert (default.dim, default.model_id) == (512, "edgeface-xs-webface12m")
    assert (old.dim, old.model_id) == (128, "mobilefacenet-foamliu-ms1m")


def test_gallery_of_the_old_model_is_refused_with_migrate_and_re_enroll(
    models_ready: None,
) -> None:
    old = ModelRef.of(Embedder.from_config(EmbedderConfig(model="mobilefacenet-dyn", flip=False)))
    new = ModelRef.of(Embedder.from_config(EmbedderConfig(flip=False)))
    g = Gallery(dim=128, model=old)
    g.add_identity("Kim", [Template(np.ones(128, np.float32) / np.sqrt(128), 1.0, old)])
    with pytest.raises(ModelMismatchError) as err:
        g.identify(np.ones(512, np.float32) / np.sqrt(512), 0.5, model=new)
    msg = str(err.value)
    assert "gallery migrate" in msg and "re-enroll" in msg
    assert 'embedder model = "mobilefacenet-dyn"' in msg  # how to keep the old model


@pytest.mark.parametrize("flip", [True, False])
def test_every_edgeface_model_has_a_packaged_calibration_for_its_float_file(flip: bool) -> None:
    from edgeface.modelstore import resolve_model, sha256_file

    for name in ("edgeface-xs", "edgeface-xxs"):
        entry = load_manifest()[name]
        cal = load_calibration(embedding_space=entry.embedding_space, flip=flip)
        assert cal.flip is flip and cal.model_sha256 == entry.sha256
        assert cal.model_sha256 == sha256_file(resolve_model(name))
        t = [cal.thresholds[k] for k in ("1e-02", "1e-03", "1e-04")]
        assert 0.0 < t[0] < t[1] < t[2] < 1.0  # stricter FAR, higher threshold


def test_int8_calibrations_belong_to_edgeface_and_to_another_file_than_float() -> None:
    root = Path(__file__).resolve().parents[1] / "models" / "calibration"
    files = sorted(root.glob("edgeface-*.int8-onnx.json"))
    assert files, "no INT8 calibration file for EdgeFace"
    floats = {e.embedding_space: e.sha256 for e in load_manifest().values()}
    for f in files:
        cal = load_calibration(f)
        assert f.name.startswith(cal.embedding_space) and cal.flip
        assert len(cal.model_sha256) == 64 and cal.model_sha256 != floats[cal.embedding_space]


def test_an_empty_gallery_takes_the_first_models_size() -> None:
    g = Gallery()  # as `edgeface gallery init` makes it: empty, 128 by default
    model = ModelRef("edgeface-xs-webface12m", "e" * 64)
    assert g.identify(np.ones(512, np.float32), 0.5, model=model).label == "unknown"
    g.add_identity("Kim", [Template(np.ones(512, np.float32), 1.0, model)])
    assert g.dim == 512 and g.model == model
    assert g.identify(np.ones(512, np.float32), 0.5, model=model).label == "Kim"
