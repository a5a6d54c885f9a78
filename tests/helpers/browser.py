"""Headless Chromium for looking at a page the way a user would, and a tiny PNG reader.

Chromium is Debian's package (``scripts/dev.py`` installs it as root). Each run
gets a fresh profile and everything that could reach the network is off; the
pages it loads are local files.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)

_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def find_chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Run:
    """What one Chromium run gave back."""

    stdout: str
    stderr: str

    def console(self) -> list[str]:
        """The page's console messages (errors, warnings, logs) Chromium reported."""
        return [m.group(1) for m in _CONSOLE.finditer(self.stderr)]


def chromium(page: Path, *extra: str, width: int = 1100, height: int = 900) -> Run:
    """Load ``page`` (a local file) in headless Chromium with ``extra`` flags."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (python3 scripts/dev.py test installs it)")
    with tempfile.TemporaryDirectory(prefix="spotgrace-chromium-") as profile:
        cmd = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *extra,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Run(done.stdout, done.stderr)


def screenshot(page: Path, out: Path, *, width: int = 1100, height: int = 900) -> Run:
    """Screenshot ``page`` to ``out`` (PNG)."""
    return chromium(page, f"--screenshot={out}", width=width, height=height)


@dataclass
class Image:
    """A decoded 8-bit RGB(A) PNG, kept as a histogram: ``colours[(r, g, b)] == count``."""

    width: int
    height: int
    colours: Counter[tuple[int, int, int]]

    def count(self, predicate: Callable[[int, int, int], bool]) -> int:
        """How many pixels satisfy ``predicate(r, g, b)``."""
        return sum(n for rgb, n in self.colours.items() if predicate(*rgb))

    def near(self, colour: str, tolerance: int = 24) -> int:
        """How many pixels are within ``tolerance`` (per channel) of ``#rrggbb``."""
        want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return self.count(
            lambda r, g, b: (
                abs(r - want[0]) <= tolerance
                and abs(g - want[1]) <= tolerance
                and abs(b - want[2]) <= tolerance
            )
        )


def _add_bytes(x: bytes | bytearray, y: bytes | bytearray) -> bytearray:
    """Bytewise (x + y) mod 256, on whole rows at once (no carry between bytes)."""
    n = len(x)
    low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
    a, b = int.from_bytes(x, "big"), int.from_bytes(y, "big")
    return bytearray((((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "big"))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(data: bytes) -> Image:
    """Decode a non-interlaced 8-bit RGB or RGBA PNG with zlib alone."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: Counter[tuple[int, int, int]] = Counter()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 2:
            line = _add_bytes(line, prev)
        elif kind in (1, 3, 4):
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                if kind == 1:
                    line[i] = (line[i] + a) & 0xFF
                elif kind == 3:
                    line[i] = (line[i] + (a + b) // 2) & 0xFF
                else:
                    c = prev[i - bpp] if i >= bpp else 0
                    line[i] = (line[i] + _paeth(a, b, c)) & 0xFF
        colours.update(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        prev = line
    return Image(width, height, colours)
