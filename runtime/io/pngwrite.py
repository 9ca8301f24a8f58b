"""A streaming PNG encoder for 8- and 16-bit grey and RGB rows, written from the PNG spec.

Pillow can only save a whole image, copies RGB into 4 bytes a pixel first, and has no
16-bit colour mode at all. Enhancement produces its output a band of rows at a time, so it
writes PNG the same way: each row is filtered with PNG's "Up" filter (the byte-wise
difference to the row above, vectorised over a band), deflated, and appended as IDAT chunks.
Nothing beyond one band and the previous row is held.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # PNG filter type: difference to the previous row
_CHUNK = 1 << 20


class PngWriter:
    """Write ``height`` rows of ``(width, channels)`` uint8 or uint16 to an open binary file."""

    def __init__(self, file: BinaryIO, width: int, height: int, channels: int, bits: int, level: int = 6) -> None:
        if channels not in (1, 3) or bits not in (8, 16):
            raise ValueError(f"PngWriter writes 1 or 3 channels of 8 or 16 bits, not {channels} x {bits}")
        self.file, self.width, self.height, self.channels, self.bits = file, width, height, channels, bits
        self.rows_written = 0
        self._row_bytes = width * channels * bits // 8
        self._previous = np.zeros(self._row_bytes, dtype=np.uint8)
        self._deflate = zlib.compressobj(level)
        self._pending = bytearray()
        colour_type = 2 if channels == 3 else 0
        file.write(_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0))

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self.file.write(struct.pack(">I", len(data)) + kind + data)
        self.file.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

    def write(self, rows: np.ndarray) -> None:
        """Append ``(n, width[, channels])`` rows of the writer's bit depth."""
        dtype = np.dtype(">u2") if self.bits == 16 else np.dtype(np.uint8)
        data = np.ascontiguousarray(rows, dtype=dtype).reshape(len(rows), -1).view(np.uint8)
        if data.shape[1] != self._row_bytes:
            raise ValueError(f"rows of {data.shape[1]} bytes given, the image has {self._row_bytes}")
        filtered = np.empty((len(data), self._row_bytes + 1), dtype=np.uint8)
        filtered[:, 0] = _UP
        filtered[0, 1:] = data[0] - self._previous
        filtered[1:, 1:] = data[1:] - data[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filters do
        self._previous = data[-1].copy()
        self._pending += self._deflate.compress(filtered.tobytes())
        self.rows_written += len(data)
        while len(self._pending) >= _CHUNK:
            self._chunk(b"IDAT", bytes(self._pending[:_CHUNK]))
            del self._pending[:_CHUNK]

    def close(self) -> None:
        """Finish the stream; every row must have been written."""
        if self.rows_written != self.height:
            raise ValueError(f"{self.rows_written} of {self.height} PNG rows were written")
        self._pending += self._deflate.flush()
        if self._pending:
            self._chunk(b"IDAT", bytes(self._pending))
        self._chunk(b"IEND", b"")
