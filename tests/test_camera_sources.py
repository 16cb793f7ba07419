"""Camera sources: backends chosen from the device string, replay of real LFW images, a video
file written from real images, reconnect with exponential backoff after a fake camera dies,
config validation naming the key, and the lazy picamera2 import."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED
from doubles import FakeClock

from edgeface.camera import (
    Backoff,
    CameraError,
    CameraEvent,
    EndOfStream,
    ResilientSource,
    open_source,
)
from edgeface.camera.opencv import OpenCVSource, VideoFileSource, capture_api
from edgeface.camera.picam import Picamera2Source
from edgeface.camera.replay import ImageDirectorySource
from edgeface.errors import ConfigError

LFW = SHARED / "data" / "lfw" / "images"


def lfw_files(name: str = "Colin_Powell", n: int = 4) -> list[Path]:
    files = sorted((LFW / name).glob("*.jpg"))[:n]
    assert len(files) == n, f"missing LFW data under {LFW}"
    return files


def test_backend_is_chosen_from_the_device_form() -> None:
    pipeline = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280 ! nvvidconv ! appsink"
    assert capture_api(pipeline) == cv2.CAP_GSTREAMER
    assert capture_api("/dev/video2") == cv2.CAP_V4L2
    assert capture_api(0) == cv2.CAP_V4L2
    assert capture_api("rtsp://cam.local/stream") == cv2.CAP_FFMPEG


def test_rtsp_password_is_never_shown() -> None:
    src = OpenCVSource("rtsp://admin:s3cret@10.0.0.5/stream1")
    assert "s3cret" not in src.describe()
    assert "admin:***@10.0.0.5" in src.describe()


class FakeCapture:
    """A capture whose device 'disappears' for a while: opens fail, then it comes back."""

    def __init__(self, script: list[str], frame: np.ndarray) -> None:
        self.script = script  # per open(): "ok" or "fail"; per read(): handled by .reads
        self.frame = frame
        self.opened = False
        self.reads_left = 0
        self.released = 0
        self.props: dict[int, float] = {}

    def __call__(self, device: object, api: int) -> FakeCapture:
        step = self.script.pop(0) if self.script else "ok"
        self.opened = step != "fail"
        self.reads_left = 2 if step == "short" else 10**9
        return self

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.reads_left <= 0:
            return False, None
        self.reads_left -= 1
        return True, self.frame.copy()

    def release(self) -> None:
        self.released += 1


def test_reconnects_with_exponential_backoff_after_the_camera_disappears() -> None:
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    # first open works but the camera dies after 2 frames; 3 failed reopens; then it is back
    cap = FakeCapture(["short", "fail", "fail", "fail", "ok"], bgr)
    clock = FakeClock()
    inner = OpenCVSource("/dev/video0", width=64, height=48, capture_factory=cap, clock=clock)
    delays: list[float] = []
    events: list[CameraEvent] = []
    src = ResilientSource(
        inner,
        backoff=Backoff(initial=0.5, maximum=30, jitter=0.0),
        sleep=delays.append,
        on_event=lambda e, d: events.append(e),
    )
    frames = [src.read() for _ in range(5)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].image[0, 0].tolist() == [0, 0, 255]  # converted to RGB
    # read failure + 3 failed opens = 4 waits, doubling
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert events == [CameraEvent.LOST, CameraEvent.RESTORED]
    assert [e.value for e in events] == ["camera_lost", "camera_restored"]  # the audit names
    assert src.reconnects == 1 and src.failures == 0
    assert cap.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert cap.released >= 1


def test_gives_up_after_max_failures_when_asked() -> None:
    cap = FakeCapture(["fail"] * 10, np.zeros((4, 4, 3), np.uint8))
    src = ResilientSource(
        OpenCVSource(0, capture_factory=cap), sleep=lambda s: None, max_failures=3
    )
    with pytest.raises(CameraError, match="gave up after 3"):
        src.read()


def test_backoff_caps_and_resets() -> None:
    b = Backoff(initial=1, maximum=5, jitter=0)
    assert [b.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    b.reset()
    assert b.next() == 1
    jittered = Backoff(initial=10, maximum=100, jitter=0.1)
    assert all(9.0 <= jittered.next() <= 11.0 for _ in range(1)), "jitter stays within 10 %"


def test_image_directory_replays_real_faces_with_paced_timestamps(tmp_path: Path) -> None:
    files = lfw_files()
    for f in files:
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "zz_corrupt.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    clock = FakeClock(0.0)
    src = ImageDirectorySource(tmp_path, fps=10, clock=clock, sleep=clock.sleep)
    frames = list(src)
    assert len(frames) == 4
    assert all(f.image.shape == (250, 250, 3) and f.image.dtype == np.uint8 for f in frames)
    stamps = [f.timestamp for f in frames]
    assert np.allclose(np.diff(stamps), 0.1)
    assert len(src.skipped) == 1 and "zz_corrupt.jpg" in src.skipped[0]
    # the replay equals what load_image gives (RGB, not OpenCV's BGR)
    ref = cv2.cvtColor(cv2.imread(str(files[0])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(frames[0].image, ref)


def test_image_directory_loops_and_reports_missing_dirs(tmp_path: Path) -> None:
    src = ImageDirectorySource(files=lfw_files(n=2), loop=True)
    assert [src.read().index for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(CameraError, match="not a directory"):
        ImageDirectorySource(tmp_path / "nope").read()
    with pytest.raises(CameraError, match="no images"):
        ImageDirectorySource(tmp_path).read()


def test_video_file_source_reads_a_real_video(tmp_path: Path) -> None:
    path = tmp_path / "door.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (250, 250))
    assert writer.isOpened()
    for f in lfw_files(n=3):
        writer.write(cv2.imread(str(f)))
    writer.release()
    src = open_source({"kind": "video", "path": str(path)})
    frames = list(src)
    assert len(frames) == 3 and frames[0].image.shape == (250, 250, 3)
    looping = VideoFileSource(str(path), loop=True)
    assert len([looping.read() for _ in range(7)]) == 7
    with pytest.raises(CameraError, match="no such file"):
        VideoFileSource(str(tmp_path / "missing.mp4")).read()
    end = VideoFileSource(str(path))
    for _ in range(3):
        end.read()
    with pytest.raises(EndOfStream):
        end.read()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({}, r"camera\.kind: missing"),
        ({"kind": "webcam"}, r"camera\.kind: unknown camera kind 'webcam'"),
        ({"kind": "opencv", "widht": 640}, r"camera\.widht: unknown key"),
        ({"kind": "opencv", "width": "640"}, r"camera\.width: expected int"),
        ({"kind": "opencv", "fps": -5}, r"camera\.fps: must be positive"),
        ({"kind": "images"}, r"camera\.path: required"),
        ({"kind": "images", "path": "x", "loop": 1}, r"camera\.loop: expected bool"),
    ],
)
def test_factory_names_the_bad_key(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_source(cfg)


def test_factory_builds_each_kind_without_opening_it() -> None:
    assert open_source({"kind": "opencv", "device": "/dev/video0"}).kind == "opencv"
    assert open_source({"kind": "picamera2", "width": 320, "height": 240}).kind == "picamera2"
    assert open_source({"kind": "images", "path": "/nonexistent"}).live is False


def test_picamera2_is_imported_only_when_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    src = Picamera2Source(width=64, height=48)  # constructing needs no picamera2
    with pytest.raises(CameraError, match=r"edgeface\[pi\]"):
        src.read()

    calls: dict[str, object] = {}

    class FakePicamera2:
        def __init__(self, num: int) -> None:
            calls["num"] = num

        def create_video_configuration(self, **kw: object) -> dict:
            calls["config"] = kw
            return kw

        def configure(self, cfg: dict) -> None: ...
        def start(self) -> None: ...
        def stop(self) -> None:
            calls["stopped"] = True

        def close(self) -> None: ...

        def capture_array(self, stream: str) -> np.ndarray:
            return np.full((48, 64, 3), 7, np.uint8)

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    src = Picamera2Source(width=64, height=48, fps=15)
    frame = src.read()
    assert frame.image.shape == (48, 64, 3)
    assert calls["config"]["main"] == {"size": (64, 48), "format": "BGR888"}  # type: ignore[index]
    src.close()
    assert calls["stopped"] is True
