#!/usr/bin/env python3
"""Draw the app's icons into web/icons/: a terminal prompt (">_") in white on the accent blue, the favicon's
drawing (index.html) at phone sizes. Standard library only (zlib), so the same pixels come out every time:
run it again after changing the drawing, and commit the PNGs with it.

    python3 scripts/make_icons.py
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "web" / "icons"
BLUE = (0x1D, 0x4E, 0xD8)  # --accent in style.css, and the manifest's theme_color
WHITE = (0xFF, 0xFF, 0xFF)
# The drawing on a 16-unit square, as the favicon has it: a chevron and an underscore, strokes 1.6 wide.
STROKES = [((4.0, 5.0), (7.0, 8.0)), ((7.0, 8.0), (4.0, 11.0)), ((8.0, 11.0), (12.0, 11.0))]
HALF_WIDTH = 0.8
CORNER = 3.0

# name, size in px, rounded corners (transparent outside), drawing's scale about the centre
ICONS = [
    ("icon-192.png", 192, True, 1.0),
    ("icon-512.png", 512, True, 1.0),
    # Maskable: full bleed, the drawing well inside the safe circle (radius 40 % of the side) that every mask keeps.
    ("icon-maskable-512.png", 512, False, 0.8),
    # iOS rounds the corners itself and shows transparency as black.
    ("apple-touch-icon.png", 180, False, 1.0),
]


def segment_distance(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


def rounded_square_distance(x: float, y: float) -> float:
    """Signed distance (negative inside) to the 16-unit square with rounded corners."""
    qx, qy = abs(x - 8) - (8 - CORNER), abs(y - 8) - (8 - CORNER)
    return math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - CORNER


def coverage(distance_px: float) -> float:
    """How much of a pixel a shape covers, from the signed distance of its centre (anti-aliasing)."""
    return max(0.0, min(1.0, 0.5 - distance_px))


def render(size: int, rounded: bool, scale: float) -> bytes:
    """RGBA rows, each led by PNG's filter byte 0."""
    unit = size / 16  # pixels per unit
    rows = bytearray()
    for py in range(size):
        rows.append(0)
        for px in range(size):
            x, y = (px + 0.5) / unit, (py + 0.5) / unit
            alpha = coverage(rounded_square_distance(x, y) * unit) if rounded else 1.0
            gx, gy = 8 + (x - 8) / scale, 8 + (y - 8) / scale  # the drawing, scaled about the centre
            stroke = min(segment_distance(gx, gy, a, b) for a, b in STROKES) - HALF_WIDTH
            ink = coverage(stroke * scale * unit)
            rows += bytes(round(bg + (fg - bg) * ink) for bg, fg in zip(BLUE, WHITE, strict=True))
            rows.append(round(255 * alpha))
    return bytes(rows)


def png(size: int, rgba_rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8 bits, RGBA, no interlace
    image = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rgba_rows, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, size, rounded, scale in ICONS:
        data = png(size, render(size, rounded, scale))
        (OUT / name).write_bytes(data)
        print(f"{OUT / name}: {size}x{size}, {len(data)} bytes")


if __name__ == "__main__":
    main()
