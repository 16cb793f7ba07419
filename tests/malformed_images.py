"""A generator of malformed image inputs, shared by the fast and the slow robustness tests.

Each case is a file a user, a camera or an attacker could hand to ``load_image`` /
``edgeface detect`` / a door image replay: truncations and flipped bytes of real photos,
wrong formats, 1xN and Nx1 images, headers declaring gigapixels, sides over 32,767 px, a
7000x7000 PNG of ~110 KB, 16-bit, CMYK and animated images, and files that are not regular
files (FIFO, /dev/zero, a 3 GB sparse file, a dangling link, a directory). The set is
deterministic for a seed.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

Case = tuple[str, bytes]


def _png_header(w: int, h: int, depth: int = 8, color: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + crc


def _png(w: int, h: int, value: int = 0) -> bytes:
    """A real, valid grey PNG of any size, compressed (a flat image is tiny)."""
    ok, buf = cv2.imencode(
        ".png", np.full((h, w), value, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    assert ok
    return buf.tobytes()


def _huge_headers() -> list[Case]:
    big = 1 << 16  # 65536 x 65536 = 2^32 pixels
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x2c" + b"\0" * 20
    bmp = (
        b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHH", 40, 40000, -40000, 1, 24)
    )
    bmp += b"\0" * 24 + b"\0" * 64
    sof = (
        b"\xff\xd8\xff\xc0\x00\x11\x08"
        + struct.pack(">HH", 65535, 65535)
        + b"\x03"
        + b"\x01\x22\x00" * 3
    )
    return [
        ("huge_png_header.png", _png_header(big, big) + b"\0" * 64),
        ("huge_png_rgba16.png", _png_header(40000, 40000, 16, 6) + b"\0" * 64),
        ("huge_gif_header.gif", gif),
        ("huge_bmp_header.bmp", bmp),
        ("huge_pgm_header.pgm", b"P5\n60000 60000\n255\n" + b"\0" * 100),
        ("huge_ppm_comment.ppm", b"P6\n# c\n70000\n70000\n255\n" + b"\0" * 100),
        ("huge_jpeg_sof.jpg", sof + b"\xff\xd9"),
    ]


def _odd_shapes() -> list[Case]:
    cases = [
        (f"shape_{w}x{h}.png", _png(w, h, 128))
        for w, h in ((1, 1), (1, 500), (500, 1), (5000, 1), (4000, 2), (2, 4000), (7, 7), (12, 12))
    ]
    for w, h in ((1, 1), (3, 900), (900, 3)):
        _ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8))
        cases.append((f"shape_{w}x{h}.jpg", buf.tobytes()))
    cases.append(("side_35000x250.png", _png(35000, 250)))
    cases.append(("side_250x40000.png", _png(250, 40000)))
    cases.append(("big_7000x7000.png", _png(7000, 7000, 200)))
    return cases


def _formats(photo: np.ndarray) -> list[Case]:
    bgr = photo[:, :, ::-1]
    cases: list[Case] = [
        ("text.jpg", b"this is not an image\n" * 20),
        ("html.png", b"<html><body>404</body></html>"),
        ("zip.jpg", b"PK\x03\x04" + b"\0" * 200),
        ("pdf.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 100),
        ("zeros.jpg", b"\0" * 4096),
        ("one_byte.png", b"\x89"),
        ("jpeg_soi_only.jpg", b"\xff\xd8"),
        ("png_sig_only.png", b"\x89PNG\r\n\x1a\n"),
    ]
    for ext in (".png", ".bmp", ".ppm", ".webp", ".tiff"):
        ok, buf = cv2.imencode(ext, bgr)
        if ok:
            cases.append((f"valid{ext}", buf.tobytes()))
    ok, buf = cv2.imencode(".png", (bgr.astype(np.uint16) * 257))
    cases.append(("deep16.png", buf.tobytes()))
    ok, buf = cv2.imencode(".png", np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]))
    cases.append(("alpha.png", buf.tobytes()))
    ok, buf = cv2.imencode(".tiff", (bgr.astype(np.float32) / 255.0))
    if ok:
        cases.append(("float.tiff", buf.tobytes()))
    try:
        from PIL import Image
    except ImportError:
        return cases
    im = Image.fromarray(photo)
    for name, kwargs in (("cmyk.jpg", {"format": "JPEG"}), ("cmyk.tiff", {"format": "TIFF"})):
        b = io.BytesIO()
        im.convert("CMYK").save(b, **kwargs)
        cases.append((name, b.getvalue()))
    b = io.BytesIO()
    frames = [im.convert("P"), im.rotate(90).convert("P")]
    frames[0].save(b, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    cases.append(("animated.gif", b.getvalue()))
    return cases


def _damaged(rng: random.Random, sources: list[Case], n: int) -> list[Case]:
    cases: list[Case] = []
    for i in range(n):
        name, data = sources[i % len(sources)]
        stem, ext = os.path.splitext(name)
        kind = rng.choice(("truncate", "flip", "flip", "zero_run", "splice"))
        buf = bytearray(data)
        if kind == "truncate":
            buf = buf[: rng.randrange(1, len(buf))]
        elif kind == "flip":
            for _ in range(rng.choice((1, 2, 8, 64))):
                j = rng.randrange(len(buf))
                buf[j] ^= 1 << rng.randrange(8)
        elif kind == "zero_run":
            j = rng.randrange(len(buf))
            buf[j : j + rng.randrange(1, 512)] = b"\0" * len(buf[j : j + 512])
        else:
            j = rng.randrange(len(buf))
            buf = buf[:j] + bytes(rng.randrange(256) for _ in range(32)) + buf[j:]
        cases.append((f"{kind}_{i:04d}_{stem}{ext}", bytes(buf)))
    return cases


def generate(photos: list[Path], n_damaged: int, seed: int = 13) -> list[Case]:
    """All byte cases: the fixed ones plus ``n_damaged`` damaged copies of real photos."""
    rng = random.Random(seed)
    first = cv2.imread(str(photos[0]))[:, :, ::-1]
    fixed = _huge_headers() + _odd_shapes() + _formats(first)
    sources: list[Case] = [(p.name, p.read_bytes()) for p in photos]
    for name, data in list(_formats(first)):
        if name.startswith("valid") or name in ("deep16.png", "alpha.png", "animated.gif"):
            sources.append((name, data))
    return fixed + _damaged(rng, sources, n_damaged)


def write_cases(cases: list[Case], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in cases:
        p = folder / name
        p.write_bytes(data)
        paths.append(p)
    return paths


def special_files(folder: Path) -> Iterator[Path]:
    """Paths that are not regular image files: a FIFO (nobody writes), /dev/zero, a 3 GB
    sparse file, a dangling symlink, a directory named like an image, an empty file."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "fifo.jpg"
    os.mkfifo(fifo)
    yield fifo
    yield Path("/dev/zero")
    sparse = folder / "sparse.png"
    with open(sparse, "wb") as f:
        f.truncate(3 * 1024**3)
    yield sparse
    link = folder / "dangling.jpg"
    link.symlink_to(folder / "nowhere.jpg")
    yield link
    d = folder / "dir.jpg"
    d.mkdir()
    yield d
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    yield empty
