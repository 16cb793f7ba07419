"""Bad and unusual image input: every case gets a typed error or a correct RGB array."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.errors import ImageError
from edgeface.imaging import ensure_rgb_uint8, load_image

JPG = "detection/dlib_faces/2008_001009.jpg"


def test_reads_jpeg_as_rgb(shared_data: Path) -> None:
    rgb = load_image(shared_data / JPG)
    bgr = cv2.imread(str(shared_data / JPG))
    assert rgb.dtype == np.uint8 and rgb.shape == bgr.shape
    assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_greyscale_pgm_and_gif_become_three_channels(shared_data: Path) -> None:
    pgm = load_image(shared_data / "identities/orl/s1/1.pgm")
    assert pgm.shape == (112, 92, 3)
    assert np.array_equal(pgm[..., 0], pgm[..., 2])
    gif = load_image(shared_data / "identities/yale/subject02.happy")  # GIF without extension
    assert gif.shape == (243, 320, 3)


def test_rgba_png_drops_alpha(shared_data: Path, tmp_path: Path) -> None:
    bgr = cv2.imread(str(shared_data / JPG))
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 128, np.uint8)])
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    assert np.array_equal(load_image(path), bgr[:, :, ::-1])


def test_sixteen_bit_png_is_scaled_to_eight(shared_data: Path, tmp_path: Path) -> None:
    bgr = cv2.imread(str(shared_data / JPG))
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), bgr.astype(np.uint16) * 257)
    assert np.array_equal(load_image(path), bgr[:, :, ::-1])


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"\x89PNG\r\n\x1a\nthis is not a png", "not a readable image")],
)
def test_empty_and_corrupt_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_rejected_or_decoded(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / JPG).read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[:200])
    with pytest.raises(ImageError):
        load_image(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    ok, enc = cv2.imencode(".jpg", np.zeros((20000, 20000), np.uint8))
    assert ok
    path.write_bytes(enc.tobytes())
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_arrays_from_cameras() -> None:
    with pytest.raises(ImageError, match="zero-size"):
        ensure_rgb_uint8(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="channels"):
        ensure_rgb_uint8(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        ensure_rgb_uint8(np.full((4, 4, 3), np.nan, np.float32))
    grey = ensure_rgb_uint8(np.arange(16, dtype=np.uint8).reshape(4, 4))
    assert grey.shape == (4, 4, 3)
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255
    assert ensure_rgb_uint8(bgr, assume_bgr=True)[0, 0].tolist() == [0, 0, 255]
