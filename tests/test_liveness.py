"""Liveness runtime on real frames: crop rules, the upstream samples, fail-closed loading and
the CLI. The development-set thresholds are in test_liveness_dev.py (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import ConfigError, ImageError, ModelError
from edgeface.liveness import LivenessChecker, LivenessConfig, context_box
from edgeface.liveness.calibration import bpcer_apcer, threshold_for_bpcer


@pytest.fixture(scope="module")
def samples(shared_models: Path, tmp_path_factory) -> Path:
    """Upstream's samples, upright. They are phone JPEGs rotated by an EXIF tag, which
    cv2.imread (upstream) applies and ``load_image`` (cv2.imdecode, IMREAD_UNCHANGED) does not:
    loaded as they are, the faces lie on their side and MTCNN finds none."""
    import cv2

    out = tmp_path_factory.mktemp("samples")
    for src in sorted((shared_models / "minifasnet" / "samples").glob("*.jpg")):
        cv2.imwrite(str(out / f"{src.stem}.png"), cv2.imread(str(src)))
    return out


@pytest.fixture(scope="module")
def checker(models_ready: None) -> LivenessChecker:
    return LivenessChecker.from_config()


def test_crop_shifts_inside_the_frame_and_never_pads() -> None:
    # a face in the top-left corner: the 2.7x box is shifted right/down, not padded
    b = context_box((10, 10, 110, 130), (640, 480), 2.7)
    assert (b.left, b.top) == (0, 0)
    assert b.right - b.left == 270 and b.bottom - b.top == 324  # 100x120 face, scale kept
    # a face near the bottom-right corner
    b = context_box((560, 400, 630, 470), (640, 480), 4.0)
    assert (b.right, b.bottom) == (639, 479) and b.left == 639 - 280
    # a big face: the scale shrinks so the box fits the frame (here the height limits it)
    b = context_box((100, 50, 400, 450), (640, 480), 2.7)
    assert b.top == 0 and b.bottom == 479 and b.right - b.left == int(300 * 479 / 400)


def test_degenerate_box_is_an_image_error() -> None:
    with pytest.raises(ImageError):
        context_box((50, 50, 50, 80), (640, 480), 2.7)


def test_threshold_for_bpcer_keeps_its_promise() -> None:
    live = np.arange(100) / 100.0
    thr = threshold_for_bpcer(live, 0.05)
    bpcer, apcer = bpcer_apcer(live, np.array([0.0, thr, 1.0]), thr)
    assert bpcer <= 0.05 and bpcer == pytest.approx(0.05)
    assert apcer == pytest.approx(2 / 3)


def test_upstream_samples_with_our_detector(checker, detector, samples: Path) -> None:
    from edgeface.imaging import load_image

    verdicts = {}
    for name in ("image_F1", "image_F2", "image_T1"):
        image = load_image(samples / f"{name}.png")
        face = max(detector.detect(image), key=lambda f: f.area)
        verdicts[name] = checker.check(image, face)
    assert not verdicts["image_F1"].live and verdicts["image_F1"].score < 0.2  # print
    assert not verdicts["image_F2"].live and verdicts["image_F2"].score < 0.2  # phone screen
    assert verdicts["image_T1"].live and verdicts["image_T1"].score > 0.95


def test_the_two_networks_side_by_side_give_the_same_scores(
    checker, detector, samples: Path
) -> None:
    """With ``parallel`` the networks run side by side; the scores are the same."""
    from edgeface.imaging import load_image
    from edgeface.liveness import LivenessConfig

    parallel = LivenessChecker.from_config(LivenessConfig(parallel=True))
    sequential = checker  # the default
    assert parallel._pool is not None and sequential._pool is None
    for name in ("image_F1", "image_F2", "image_T1"):
        image = load_image(samples / f"{name}.png")
        boxes = [f.box for f in detector.detect(image)]
        assert np.array_equal(parallel.summed(image, boxes), sequential.summed(image, boxes))


def test_colour_order_matters(checker, detector, samples: Path) -> None:
    """The guard against the silent failure SOURCE.md measured: feeding RGB as if it were BGR
    makes the screen-replay sample look far more live."""
    from edgeface.imaging import load_image

    image = load_image(samples / "image_F2.png")
    face = max(detector.detect(image), key=lambda f: f.area)
    swapped = np.ascontiguousarray(image[..., ::-1])
    assert checker.score(swapped, face) > checker.score(image, face) + 0.3


def test_missing_model_fails_closed(tmp_path: Path) -> None:
    cfg = LivenessConfig(paths=(str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")))
    with pytest.raises(ModelError, match="does not exist"):
        LivenessChecker.from_config(cfg)


def test_corrupt_model_fails_closed(tmp_path: Path, checker) -> None:
    good = checker.nets[1].session.info.path
    bad = tmp_path / "v2.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ModelError, match=r"v2\.onnx"):
        LivenessChecker.from_config(LivenessConfig(paths=(str(bad), str(good))))


def test_swapped_or_unknown_model_files_have_no_calibration(checker) -> None:
    a, b = (str(n.session.info.path) for n in checker.nets)
    with pytest.raises(ConfigError, match="no liveness calibration"):
        LivenessChecker.from_config(LivenessConfig(paths=(b, a)))


def test_packaged_calibration_matches_the_float_pair(checker) -> None:
    cal = checker.calibration
    assert cal is not None and cal.model_sha256 == checker.model_sha256
    assert checker.threshold == cal.threshold(0.02)
    assert set(cal.thresholds) >= {"0.01", "0.02", "0.05", "0.1"}


def _copied_pair(checker, folder: Path) -> tuple[str, str]:
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in checker.nets:
        src = Path(n.session.info.path)
        out.append(str(shutil.copyfile(src, folder / src.name)))
    return out[0], out[1]


def test_calibration_beside_the_model_files_is_found_first(checker, tmp_path: Path) -> None:
    """A quantized pair travels with its calibration (``eval liveness --write-calibration
    DIR``): the door finds it beside the files, before the packaged ones."""
    from edgeface.liveness.calibration import LivenessCalibration

    paths = _copied_pair(checker, tmp_path / "pair")
    thresholds = {"0.01": 0.11, "0.02": 0.22, "0.05": 0.33, "0.1": 0.44}
    LivenessCalibration("beside", checker.model_sha256, thresholds, {}).save(
        tmp_path / "pair" / "liveness-beside.json"
    )
    found = LivenessChecker.from_config(LivenessConfig(paths=paths))
    assert found.calibration is not None and found.calibration.variant == "beside"
    assert found.threshold == 0.22
    # a calibration beside the files that was made for other files is passed over
    other = _copied_pair(checker, tmp_path / "other")
    LivenessCalibration("stale", ["0" * 64, "1" * 64], thresholds, {}).save(
        tmp_path / "other" / "liveness-stale.json"
    )
    packaged = LivenessChecker.from_config(LivenessConfig(paths=other))
    assert packaged.threshold == checker.threshold


def test_corrupt_calibration_beside_the_models_fails_closed(checker, tmp_path: Path) -> None:
    paths = _copied_pair(checker, tmp_path / "pair")
    (tmp_path / "pair" / "liveness-broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"liveness-broken\.json: not a valid liveness"):
        LivenessChecker.from_config(LivenessConfig(paths=paths))


def _edgeface(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeface.cli.main", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)  # fmt: skip


def test_cli_verify_refuses_a_photo_of_a_photo(checker, samples: Path, tmp_path: Path) -> None:
    res = _edgeface("verify", str(samples / "image_F1.png"), str(samples / "image_T1.png"),
                    "--liveness", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 18, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "image_F1.png: the face is not live" in err[0]


def test_cli_detect_reports_liveness(checker, samples: Path, tmp_path: Path) -> None:
    res = _edgeface("detect", str(samples / "image_T1.png"), str(samples / "image_F2.png"),
                    "--liveness", "--min-face", "60", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any("LIVE" in line and "SPOOF" not in line for line in lines[:3])
    assert any("SPOOF" in line for line in lines[2:])


def test_cli_corrupt_liveness_model_is_one_line_exit_4(samples: Path, tmp_path: Path) -> None:
    import os

    models = tmp_path / "models"  # searched before the cache: a corrupt copy shadows the good one
    (models / "derived").mkdir(parents=True)
    (models / "derived" / "minifasnet_v2_2.7.onnx").write_bytes(b"not a model")
    env = {**os.environ, "EDGEFACE_MODELS_DIR": str(models)}
    res = subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", "detect", str(samples / "image_T1.png"),
         "--liveness"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 4
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "minifasnet_v2_2.7.onnx" in err[0] and "sha256" in err[0]


def test_door_check_loads_the_liveness_models(checker, tmp_path: Path) -> None:
    from edgeface.door.config import parse_config
    from edgeface.door.health import check_liveness

    base = {"camera": {"kind": "images", "path": "."}, "actuator": {"kind": "dryrun"}}
    ok = check_liveness(parse_config(base))
    assert ok.ok and f"threshold {checker.threshold:.4f}" in ok.message
    assert "(onnxruntime)" in ok.message and "calibration minifasnet-fp32" in ok.message
    bad = tmp_path / "v2.onnx"
    bad.write_bytes(b"garbage")
    good = str(checker.nets[1].session.info.path)
    cfg = parse_config({**base, "liveness": {"paths": [str(bad), good]}})
    failed = check_liveness(cfg)
    assert not failed.ok and "v2.onnx" in failed.message
    off = check_liveness(parse_config({**base, "liveness": {"required": False}}))
    assert off.ok and off.message.startswith("OFF")


def test_enrollment_refuses_a_printed_photo(checker, pipeline, shared_data: Path) -> None:
    from edgeface.gallery.enroll import Enroller

    nuaa = shared_data / "spoof" / "nuaa_raw"
    enroller = Enroller(pipeline, liveness=checker)
    plan = enroller.from_files("NUAA 0001", [
        sorted((nuaa / "live").glob("0001_*.jpg"))[0],
        sorted((nuaa / "spoof").glob("0001_*.jpg"))[0],
    ])  # fmt: skip
    live, photo = plan.candidates
    assert live.accepted, live.reason
    assert not photo.accepted and "not a live face" in (photo.reason or "")
