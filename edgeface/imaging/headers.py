"""An image's declared width and height, read from its header without decoding it.

So that a 110 KB PNG declaring 100000x100000 pixels is refused in microseconds instead of
after OpenCV allocated (or failed to allocate) gigabytes. Covers the formats cameras and
people actually send (JPEG, PNG, GIF, BMP, PNM, WebP); for the others OpenCV's own limit
(``CV_IO_MAX_IMAGE_PIXELS``) applies.
"""

from __future__ import annotations

import re
import struct

Size = tuple[int, int]

_PNM = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")
# JPEG start-of-frame markers (every SOFn except DHT C4, JPG C8, DAC CC)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> Size | None:
    """``(width, height)`` the header declares, or None when the format is not one of ours
    or the header is cut short (the decoder then says what is wrong)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])  # type: ignore[return-value]
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])  # type: ignore[return-value]
        if data[:2] == b"BM" and len(data) >= 26:
            (header_size,) = struct.unpack("<I", data[14:18])
            if header_size == 12:  # OS/2 BITMAPCOREHEADER
                return struct.unpack("<HH", data[18:22])  # type: ignore[return-value]
            w, h = struct.unpack("<ii", data[18:26])
            return w, abs(h)  # negative height = top-down rows
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456":
            m = _PNM.match(data[:4096])
            return (int(m.group(1)), int(m.group(2))) if m else None
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> Size | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> Size | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None
