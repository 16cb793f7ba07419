"""Helper processes: the same faces as one process, and a dead or broken helper costs only speed."""

from __future__ import annotations

import io
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from edgeface.detector import DetectorConfig, MTCNNDetector
from edgeface.detector.helper import (
    HelperError,
    HelperProcess,
    SharedFrame,
    _balance,
    _cpu_plan,
    _shared_fd,
    _warn_blas_threads,
    read_message,
    write_message,
)
from edgeface.imaging import load_image
from edgeface.types import Face

PHOTOS = [
    "detection/dlib_faces/2008_001009.jpg",
    "detection/dlib_faces/2008_002506.jpg",
    "detection/dlib_faces/bald_guys.jpg",
    "lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg",
]


def assert_same_faces(a: list[Face], b: list[Face]) -> None:
    """The same faces up to float32 rounding: a batch split differently, or BLAS with other
    threads, sums in another order (seen: 1.3e-3 px on a 270 px box of a 2000 px photo)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.box, y.box, atol=1e-2)
        np.testing.assert_allclose(x.landmarks, y.landmarks, atol=1e-2)
        assert x.score == pytest.approx(y.score, abs=1e-5)


@pytest.fixture(scope="module")
def serial(models_ready: None) -> MTCNNDetector:
    return MTCNNDetector(DetectorConfig(workers=1))


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[np.ndarray]:
    return [load_image(shared_data / p) for p in PHOTOS]


def test_helpers_find_the_same_faces_as_one_process(
    serial: MTCNNDetector, photos: list[np.ndarray]
) -> None:
    # photos of different sizes, so the shared frame is re-mapped between them
    with MTCNNDetector(DetectorConfig(workers=3)) as shared:
        for photo in photos + photos[:1]:
            faces = shared.detect(photo)
            assert_same_faces(faces, serial.detect(photo))
        assert shared._share is not None and shared._share.active
        assert sum(len(shared.detect(p)) for p in photos) >= 6  # real faces, not empty lists


def test_a_killed_helper_is_replaced_by_work_in_this_process(
    serial: MTCNNDetector, photos: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    with MTCNNDetector(DetectorConfig(workers=2)) as shared:
        shared.detect(photos[0])
        assert shared._share is not None
        process = shared._share._helpers[0]._process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        with caplog.at_level(logging.WARNING):
            faces = shared.detect(photos[2])
        assert_same_faces(faces, serial.detect(photos[2]))
        assert "helper process stopped" in caplog.text
        assert not shared._share.active  # later frames run here from the start
        assert_same_faces(shared.detect(photos[0]), serial.detect(photos[0]))


def test_close_stops_the_helpers_and_detection_goes_on(
    serial: MTCNNDetector, photos: list[np.ndarray]
) -> None:
    shared = MTCNNDetector(DetectorConfig(workers=2))
    assert shared._share is not None
    process = shared._share._helpers[0]._process
    shared.close()
    assert process is not None and process.poll() is not None
    assert_same_faces(shared.detect(photos[0]), serial.detect(photos[0]))


def test_a_helper_that_cannot_start_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-weights.npz"
    frame = SharedFrame(_shared_fd())
    helper = HelperProcess(missing, frame.fd)
    try:
        helper.request_levels([0.5], 0.6, 0.5)
        with pytest.raises(HelperError, match="exited"):
            helper.receive(timeout=60)
    finally:
        helper.close()


def test_a_helper_answers_a_bad_request_with_an_error(models_ready: None) -> None:
    with MTCNNDetector(DetectorConfig(workers=2)) as shared:
        assert shared._share is not None
        helper = shared._share._helpers[0]
        helper.request_crops("no-such-net", np.zeros((1, 4), np.float32))
        with pytest.raises(HelperError, match="no-such-net"):
            helper.receive()


def test_messages_round_trip_and_refuse_what_is_not_plain_numbers() -> None:
    boxes = np.arange(12, dtype=np.float32).reshape(3, 4)
    stream = io.BytesIO()
    write_message(stream, {"cmd": "crops", "net": "rnet"}, [boxes, np.zeros(0, np.float64)])
    stream.seek(0)
    message = read_message(stream)
    assert message is not None
    header, arrays = message
    assert header == {"cmd": "crops", "net": "rnet"}
    np.testing.assert_array_equal(arrays[0], boxes)
    assert arrays[1].shape == (0,) and arrays[1].dtype == np.float64
    assert read_message(stream) is None  # end of stream

    raw = stream.getvalue()
    with pytest.raises(HelperError, match="ended after"):
        read_message(io.BytesIO(raw[:-5]))  # cut inside the array bytes

    obj = b'{"arrays": [["|O", [1]]]}'
    with pytest.raises(HelperError, match="refusing"):
        read_message(io.BytesIO(len(obj).to_bytes(4, "little") + obj + b"\0" * 8))


def test_levels_are_balanced_and_each_given_once() -> None:
    costs = [29.6, 16.0, 8.9, 5.5, 3.7, 2.9, 2.4, 2.2]  # a 640x480 pyramid, in k-pixels
    shares = _balance(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))
    loads = [sum(costs[i] for i in share) for share in shares]
    assert abs(loads[0] - loads[1]) <= 2.2  # within the smallest level
    assert _balance(costs[:1], 3) == [[0], [], []]


linux_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="CPU affinity needs Linux and at least two CPUs (CI has two)",
)


def _helper_pid(detector: MTCNNDetector) -> int:
    assert detector._share is not None and detector._share._helpers
    process = detector._share._helpers[0]._process
    assert process is not None
    return process.pid


@linux_affinity
def test_caller_and_helper_get_a_cpu_each_and_the_caller_gets_its_cpus_back(
    serial: MTCNNDetector, photos: list[np.ndarray]
) -> None:
    before = os.sched_getaffinity(0)
    with MTCNNDetector(DetectorConfig(workers=2)) as shared:
        assert shared._share is not None
        helper_cpus = os.sched_getaffinity(_helper_pid(shared))
        with shared._share.pinned():
            caller_cpus = os.sched_getaffinity(0)
        assert len(helper_cpus) == 1 and len(caller_cpus) == 1
        assert helper_cpus != caller_cpus and (helper_cpus | caller_cpus) <= before
        assert_same_faces(shared.detect(photos[2]), serial.detect(photos[2]))
        assert os.sched_getaffinity(0) == before  # restored after every frame


@linux_affinity
def test_without_pinning_the_cpu_sets_are_left_alone(photos: list[np.ndarray]) -> None:
    before = os.sched_getaffinity(0)
    with MTCNNDetector(DetectorConfig(workers=2, pin_cpus=False)) as shared:
        assert shared._share is not None
        assert os.sched_getaffinity(_helper_pid(shared)) == before
        with shared._share.pinned():
            assert os.sched_getaffinity(0) == before
        assert shared.detect(photos[0])


def test_cpu_plans_spread_over_the_cpus_and_need_one_cpu_per_party(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_setaffinity", lambda *a: None, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7}, raising=False)
    first, second = _cpu_plan(2), _cpu_plan(2)
    assert first is not None and second is not None
    assert len(set(first)) == 2 and set(first).isdisjoint(second)  # a second detector
    assert _cpu_plan(5) is None  # more parties than CPUs: no pinning at all
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert _cpu_plan(2) is None  # a caller restricted to one CPU


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
def test_helpers_run_single_threaded_blas(photos: list[np.ndarray]) -> None:
    with MTCNNDetector(DetectorConfig(workers=2)) as shared:
        assert shared.detect(photos[0])  # the helper has answered: it runs our code
        environ = Path(f"/proc/{_helper_pid(shared)}/environ").read_bytes().split(b"\0")
    assert b"OPENBLAS_NUM_THREADS=1" in environ and b"OMP_NUM_THREADS=1" in environ


def test_helpers_with_threaded_blas_here_say_how_to_fix_it(
    models_ready: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    _warn_blas_threads.cache_clear()
    with caplog.at_level(logging.WARNING), MTCNNDetector(DetectorConfig(workers=2)):
        pass
    assert "OPENBLAS_NUM_THREADS=1" in caplog.text and "workers=1" in caplog.text
    _warn_blas_threads.cache_clear()


def test_recording_sees_every_level_and_crop_even_with_helpers(shared_data: Path) -> None:
    """INT8 calibration records the cascade's inputs: with helpers, their share must be in
    the record too (swapping sessions from outside saw only the main process's share)."""
    from edgeface.detector import pyramid_scales
    from edgeface.imaging import load_image

    image = load_image(shared_data / "detection/dlib_faces/2008_001009.jpg")
    h, w = image.shape[:2]
    records: dict[int, dict[str, list[np.ndarray]]] = {}
    faces = {}
    for workers in (1, 2):
        with MTCNNDetector(DetectorConfig(min_face_size=20, workers=workers)) as det:
            plain = det.detect(image)
            seen: dict[str, list[np.ndarray]] = {"pnet": [], "rnet": [], "onet": []}
            with det.recording(lambda net, x, seen=seen: seen[net].append(x.copy())):
                faces[workers] = det.detect(image)
            got, want = ([f.box for f in found] for found in (faces[workers], plain))
            np.testing.assert_allclose(got, want, atol=0.01)  # float32 rounding of the split
            det.detect(image)  # after the block nothing more is recorded
        records[workers] = seen
    scales = pyramid_scales(h, w, 20, 0.709)
    for workers, seen in records.items():
        shapes = [x.shape for x in seen["pnet"]]
        assert shapes == [(1, int(h * s), int(w * s), 3) for s in scales], workers
        assert all(x.dtype == np.float32 for batch in seen.values() for x in batch)
        assert sum(len(x) for x in seen["onet"]) >= len(faces[workers])
    # the same inputs whichever process would have run them
    for a, b in zip(records[1]["pnet"], records[2]["pnet"], strict=True):
        np.testing.assert_array_equal(a, b)
    for net in ("rnet", "onet"):
        a, b = (np.concatenate(records[k][net]) for k in (1, 2))
        assert a.shape == b.shape and a.shape[0] > 0, net
        np.testing.assert_allclose(a, b, atol=1e-5)
