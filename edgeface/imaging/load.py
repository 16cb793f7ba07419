"""Image loading with explicit, typed failures.

Convention: every image inside edgeface is an **RGB**, ``uint8``, ``H x W x 3``, C-contiguous
NumPy array. This module is where BGR (OpenCV), greyscale, RGBA and 16-bit inputs are turned
into that form, so that no other module has to guess.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError
from edgeface.imaging.headers import declared_size
from edgeface.quiet import native_stderr_muted
from edgeface.storage import read_regular_file

#: Largest image we decode, in pixels. 20000x20000 RGB would be 1.2 GB; a door unit has
#: less memory than that, so we refuse instead of swapping the device to death.
MAX_PIXELS = 50_000_000
#: Longest side we decode: OpenCV's geometric functions index columns with 16-bit integers
#: (``remap``: ``dst.cols < SHRT_MAX``), so a 35000x250 image cannot be processed.
MAX_SIDE = 32_000
#: Largest image file we read: a 50 M pixel uncompressed RGB file is 150 MB. Reading stops
#: here, so /dev/zero or a 3 GB sparse file never fills the memory.
MAX_FILE_BYTES = 256 * 1024 * 1024

# OpenCV checks a header's declared size against this before it allocates anything (for the
# formats our own header check below does not know, e.g. TIFF); it reads it on first use.
os.environ.setdefault("CV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8.

    Raises :class:`ImageError` with a message naming the file for: a missing file, a
    directory or anything else that is not a regular file (FIFO, device), an empty or
    oversized file, bytes no decoder understands, or an image larger than ``max_pixels``.
    """
    p = Path(path)
    data = read_regular_file(p, max_bytes=MAX_FILE_BYTES, what="image", error=ImageError)
    return decode_image(data, name=str(p), max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, PGM, GIF via fallback, ...) into RGB uint8."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    _check_declared_size(data, name, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        with native_stderr_muted():  # libjpeg prints "Corrupt JPEG data" itself
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None  # OpenCV refuses the header (size over its limit, bad fields)
    if img is None:
        img = _decode_with_pillow(data, max_pixels)
    if img is None:
        raise ImageError(f"{name}: not a readable image (unknown format or corrupt data)")
    return ensure_rgb_uint8(img, name=name, assume_bgr=True, max_pixels=max_pixels)


def _check_declared_size(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse huge or degenerate images from their header, before decoding them."""
    size = declared_size(data)
    if size is None:
        return
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: the header declares a {w}x{h} image")
    _check_size(w, h, name, max_pixels)


def _check_size(w: int, h: int, name: str, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise ImageError(
            f"{name}: image too large ({w}x{h}, limit {max_pixels:,} pixels); resize it before use"
        )
    if max(w, h) > MAX_SIDE:
        raise ImageError(
            f"{name}: image side too long ({w}x{h}, limit {MAX_SIDE:,} px); resize it before use"
        )


def _decode_with_pillow(data: bytes, max_pixels: int) -> np.ndarray | None:
    """GIF and a few other formats OpenCV does not read; Pillow is optional."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as im:
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" etc.: we report it ourselves
            if im.width * im.height > max_pixels or max(im.size) > MAX_SIDE:
                return None
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
    _check_size(w, h, name, max_pixels)
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
