"""Image loading with explicit, typed failures.

Convention: every image inside edgeface is an **RGB**, ``uint8``, ``H x W x 3``, C-contiguous
NumPy array. This module is where BGR (OpenCV), greyscale, RGBA and 16-bit inputs are turned
into that form, so that no other module has to guess.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError

#: Largest image we decode, in pixels. 20000x20000 RGB would be 1.2 GB; a door unit has
#: less memory than that, so we refuse instead of swapping the device to death.
MAX_PIXELS = 50_000_000


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8.

    Raises :class:`ImageError` with a message naming the file for: a missing file, a
    directory, an empty file, bytes no decoder understands, or an image larger than
    ``max_pixels``.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(p), max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, PGM, GIF via fallback, ...) into RGB uint8."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    _check_declared_size(buf, name, max_pixels)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        img = _decode_with_pillow(data)
    if img is None:
        raise ImageError(f"{name}: not a readable image (unknown format or corrupt data)")
    return ensure_rgb_uint8(img, name=name, assume_bgr=True, max_pixels=max_pixels)


def _check_declared_size(buf: np.ndarray, name: str, max_pixels: int) -> None:
    """Refuse huge images before decoding them, using the header OpenCV reads."""
    # cv2.imdecode has no header-only mode; a reduced decode (1/8) bounds the cost of
    # learning the size of a huge JPEG. For formats without reduced decoding this is a
    # full decode, which OpenCV itself limits through CV_IO_MAX_IMAGE_PIXELS.
    small = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None:
        return
    approx = small.shape[0] * small.shape[1] * 64
    if approx > max_pixels * 1.2:
        h, w = small.shape[0] * 8, small.shape[1] * 8
        raise ImageError(
            f"{name}: image too large (about {w}x{h}, limit {max_pixels:,} pixels); "
            "resize it before use"
        )


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    """GIF and a few other formats OpenCV does not read; Pillow is optional."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = im.convert("RGB")
            return np.asarray(rgb)[:, :, ::-1].copy()  # to BGR, like OpenCV
    except Exception:
        return None


def ensure_rgb_uint8(
    img: np.ndarray,
    *,
    name: str = "image",
    assume_bgr: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Turn any 2-D/3-D array a camera or decoder gives into RGB uint8.

    ``assume_bgr`` says the 3/4-channel input is in OpenCV order. 16-bit images are scaled
    to 8 bits; greyscale is replicated; alpha is dropped (not blended: faces are opaque).
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{name}: expected a NumPy array, got {type(img).__name__}")
    if img.ndim not in (2, 3) or img.size == 0 or min(img.shape[:2]) == 0:
        raise ImageError(f"{name}: zero-size or malformed image (shape {img.shape})")
    h, w = img.shape[:2]
    if h * w > max_pixels:
        raise ImageError(
            f"{name}: image too large ({w}x{h}, limit {max_pixels:,} pixels); resize it before use"
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        if not np.isfinite(img).all():
            raise ImageError(f"{name}: image contains NaN or infinite values")
        scale = 255.0 if img.max(initial=0.0) <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 4:
        img = img[:, :, :3]
    elif channels != 3:
        raise ImageError(f"{name}: unsupported number of channels ({channels})")
    if assume_bgr:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)
