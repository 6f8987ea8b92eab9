"""Bad image files, made in memory, shared by the CLI and app tests (the library has its own)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A small PNG whose header claims a huge size (IHDR patched, CRC recomputed)."""
    data = bytearray(png_bytes((8, 8)))
    start = 8 + 4 + 4  # signature, IHDR length, "IHDR"
    data[start : start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : start + 13])) & 0xFFFFFFFF
    data[start + 13 : start + 17] = struct.pack(">I", crc)
    return bytes(data)


BAD_IMAGES: dict[str, bytes] = {
    "notes.txt": b"hello, this is text",
    "random.png": bytes(range(256)) * 8,
    "empty.jpg": b"",
    "cut.png": png_bytes((64, 64))[:70],
    "bomb.png": bomb_png(),
}
