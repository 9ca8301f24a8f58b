"""Tiled super-resolution with an ``enhance`` bundle, in numpy and ONNX Runtime (no torch).

:class:`Enhancer` walks an image one row of tiles at a time. Tiles of one row that have the
same shape go to the model together (``batch`` per call); their outputs are blended into a
band of output rows with the weights of :mod:`flare.runtime.core.tiling`; rows no later tile can
touch are handed to a sink and dropped. Working memory is therefore a band of output rows
(tile height x output width) plus a batch of tiles, whatever the image height; the input is
read tile by tile through a :class:`TileSource`, so no float copy of the whole image exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import EnhanceSpec
from flare.runtime.core.tiling import Axis
from flare.runtime.foundation.errors import BundleError, ImageDecodeError, UsageError
from flare.runtime.tasks.model import BundleModel, PartOpener

#: Receives finished output rows: ``(first_row, rows)`` with rows ``(C, n, W * scale)`` in [0, 1].
Sink = Callable[[int, np.ndarray], None]


class TileSource(Protocol):
    """An image the enhancer reads in tiles of network input."""

    height: int
    width: int

    def tile(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Input pixels ``[y0, y1) x [x0, x1)`` as ``(C, h, w)`` float32 in [0, 1], C the model's channels."""
        ...


class ArraySource:
    """An in-memory ``(H, W, C)`` image in [0, 1] (uint8 or float), for callers that hold pixels."""

    def __init__(self, pixels: np.ndarray, channels: int) -> None:
        self.pixels, self.channels = pixels, channels
        self.height, self.width = pixels.shape[:2]

    def tile(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        t = self.pixels[y0:y1, x0:x1]
        t = t.astype(np.float32) / 255.0 if t.dtype == np.uint8 else t.astype(np.float32)
        if t.ndim == 2:
            t = t[:, :, None]
        if t.shape[2] != self.channels:
            t = np.repeat(t.mean(axis=2, keepdims=True), self.channels, axis=2)
        return np.ascontiguousarray(t.transpose(2, 0, 1))


class Enhancer(BundleModel):
    """An enhance bundle: tiles planned from its manifest, blended into any size of output."""

    TASK = "enhance"

    def __init__(self, bundle: str | Path, options: RunnerOptions = RunnerOptions(), tile: int | None = None,
                 overlap: int | None = None, batch: int = 4, open_part: PartOpener | None = None) -> None:
        """``tile`` / ``overlap`` default to the bundle's recommendation; ``tile`` 0 runs whole images."""
        super().__init__(bundle, options, open_part)
        self.spec = EnhanceSpec.from_dict(self.manifest.preprocessing)
        self.tile = self.spec.tile if tile is None else tile
        self.overlap = min(self.spec.overlap, max(self.tile - self.spec.window, 0)) if overlap is None else overlap
        if self.tile and (self.tile < self.spec.min_side or self.overlap >= self.tile):
            raise UsageError(f"--tile {self.tile} / --overlap {self.overlap}: the tile must be at least "
                             f"{self.spec.min_side} px and larger than the overlap")
        if self.tile and self.tile - self.overlap < self.spec.window:
            raise UsageError(f"--tile {self.tile} minus --overlap {self.overlap} must be at least the model's window "
                             f"({self.spec.window}) so tiles start on window boundaries")
        if batch < 1:
            raise UsageError(f"--batch must be at least 1, not {batch}")
        runner = self.runner
        self.batch = min(batch, runner.max_batch) if runner.max_batch else batch

    @classmethod
    def describe(cls, manifest: Manifest) -> list[str]:
        pre = manifest.preprocessing
        return [f"enhance     x{pre.get('scale')} {pre.get('color')}, window {pre.get('window')}, recommended tiles "
                f"{pre.get('tile')} px overlapping by {pre.get('overlap')}"]

    @property
    def scale(self) -> int:
        return self.spec.scale

    def infer(self, tiles: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` tiles of one shape -> ``(N, C, h*scale, w*scale)`` float32."""
        out = self.run_part("model", {self.manifest.inputs[0].name: tiles.astype(np.float32, copy=False)})
        expected = (tiles.shape[0], self.spec.channels, tiles.shape[2] * self.scale, tiles.shape[3] * self.scale)
        if out.shape != expected:
            raise BundleError(f"{self.bundle}: the model turned tiles {tiles.shape} into {out.shape}, not {expected}; "
                              "its manifest's scale or channels are wrong: re-export it")
        return out

    def check_size(self, height: int, width: int, what: str) -> None:
        """Refuse an image the graph's reflect padding cannot take."""
        if min(height, width) < self.spec.min_side:
            raise ImageDecodeError(f"{what}: is {width}x{height} px; this model needs at least "
                                   f"{self.spec.min_side} px a side")

    def enhance_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 image held in memory, enhanced to (H*s)x(W*s)x3 uint8 (a one-channel
        model sees the grey image; its output is repeated to RGB)."""
        self.check_size(rgb.shape[0], rgb.shape[1], "the image")
        s = self.scale
        out = np.empty((rgb.shape[0] * s, rgb.shape[1] * s, 3), dtype=np.uint8)

        def sink(first: int, rows: np.ndarray) -> None:
            rows = np.round(np.clip(rows, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
            out[first:first + rows.shape[0]] = rows if rows.shape[2] == 3 else rows.repeat(3, axis=2)

        self.run(ArraySource(rgb, self.spec.channels), sink)
        return out

    def run(self, source: TileSource, sink: Sink, progress: Callable[[int], None] | None = None) -> None:
        """Enhance ``source``, handing finished output rows to ``sink`` top to bottom.

        ``progress`` is called with the number of input pixels whose output rows are done.
        """
        s, h, w = self.scale, source.height, source.width
        rows = Axis.plan(h, self.tile, self.overlap, self.spec.window, s)
        cols = Axis.plan(w, self.tile, self.overlap, self.spec.window, s)
        # One buffer of output rows, reused for every row of tiles: rows [band_top, band_end)
        # are still being summed; the rows the next tile row overlaps move to its top.
        buffer = np.zeros((self.spec.channels, max(e - b for b, e in zip(rows.starts, rows.ends)) * s, w * s),
                          dtype=np.float32)
        band_top = band_end = 0
        for i, (y0, y1, wy) in enumerate(zip(rows.starts, rows.ends, rows.weights)):
            keep = max(band_end - y0 * s, 0)
            if keep:
                buffer[:, :keep] = buffer[:, band_end - band_top - keep:band_end - band_top]
            buffer[:, keep:] = 0.0
            band_top, band_end = y0 * s, y1 * s
            band = buffer[:, :band_end - band_top]
            by_shape: dict[int, list[int]] = {}
            for j, (x0, x1) in enumerate(zip(cols.starts, cols.ends)):
                by_shape.setdefault(x1 - x0, []).append(j)
            for group in by_shape.values():
                for k in range(0, len(group), self.batch):
                    chunk = group[k:k + self.batch]
                    tiles = np.stack([source.tile(y0, y1, cols.starts[j], cols.ends[j]) for j in chunk])
                    for j, out in zip(chunk, self.infer(tiles)):
                        x0, x1 = cols.starts[j] * s, cols.ends[j] * s
                        out *= wy[:, None]
                        out *= cols.weights[j][None, :]
                        band[:, :, x0:x1] += out
            done_until = rows.starts[i + 1] * s if i + 1 < len(rows) else h * s
            sink(band_top, band[:, :done_until - band_top])
            if progress is not None:
                progress((done_until - band_top) // s * w)
