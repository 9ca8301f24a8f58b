"""Where tiles go and how their outputs blend: the one definition, shared by training and runtime.

Transformer SR models need memory that grows with the image area, so large images are run
as overlapping tiles. :func:`tile_starts` places them (window-aligned, so a windowed model
computes the same attention windows as on the whole image); :func:`ramp` fades each tile in
and out over the overlap so no seam shows. The training code's ``sr_tiled`` (torch) and the
runtime's enhancer (numpy + ONNX Runtime) both use these, so they blend identically.

A grid of tiles is the product of one row of vertical and one row of horizontal extents, so
the total blending weight at a pixel is a product of two 1-D sums. :class:`Axis` divides each
tile's 1-D weights by that sum up front: summing ``wy[:, None] * wx[None, :] * output`` over
the tiles then gives the normalised blend directly, without a full-size weight image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flare.runtime.foundation.errors import UsageError

__all__ = ["Axis", "ramp", "tile_starts"]


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of at most ``tile`` pixels covering ``[0, length)``.

    Neighbouring tiles share at least ``overlap`` pixels. Every start is a multiple of
    ``align``: for a windowed model (SwinIR) an aligned tile cuts the image into the same
    attention windows as whole-image inference, so it reproduces the whole-image output away
    from its edges instead of computing a different tiling of windows. Tiles step by the
    largest multiple of ``align`` not above ``tile - overlap``; the last tile starts at the
    first aligned offset from which it reaches the border, so it is less than ``align`` pixels
    short of a full tile (never a sliver) and never longer than ``tile``. An axis no longer
    than ``tile`` is a single tile.
    """
    if length <= tile:
        return [0]
    stride = (tile - overlap) // align * align
    if stride < 1:
        raise UsageError(
            f"tile ({tile}) minus overlap ({overlap}) must be at least the model's window size ({align}) "
            "so that tiles can start on window boundaries; use a larger tile or a smaller overlap"
        )
    last = -(-(length - tile) // align) * align  # first aligned start whose tile reaches the border
    starts = list(range(0, last, stride))
    starts.append(last)
    return starts


def ramp(size: int, width: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blending weights (float32) for one tile axis of ``size`` output pixels.

    A side that meets a neighbouring tile fades in over ``width`` pixels: weight 0 for the
    first quarter (pixels computed with the most truncated context are discarded), a raised
    cosine over the middle half, 1 after. With ``t = (i + 0.5) / width`` the weight is
    ``sin(pi/2 * clamp(2t - 1/2, 0, 1))**2``, so the fade-in of one tile and the fade-out of a
    neighbour overlapping it by exactly ``width`` pixels sum to 1, and the seam has no kink.
    Because tiles overlap by at least ``width``, every pixel a tile zeroes lies in a
    neighbour's weight-1 zone, so the summed weight is never 0. Sides on the image border
    keep weight 1: no other tile covers those pixels.
    """
    weights = np.ones(size, dtype=np.float32)
    n = min(width, size)
    if n > 0:
        t = (np.arange(n, dtype=np.float64) + 0.5) / width
        rise = (np.sin(math.pi / 2 * np.clip(2 * t - 0.5, 0.0, 1.0)) ** 2).astype(np.float32)
        if fade_start:
            weights[:n] = np.minimum(weights[:n], rise)
        if fade_end:
            weights[size - n:] = np.minimum(weights[size - n:], rise[::-1])
    return weights


@dataclass(frozen=True)
class Axis:
    """The tiles along one image axis: input extents and normalised output weights.

    ``weights[i]`` covers output pixels ``[starts[i] * scale, ends[i] * scale)``; along the
    axis the weights of all tiles sum to 1 at every output pixel.
    """

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    weights: tuple[np.ndarray, ...]

    @classmethod
    def plan(cls, length: int, tile: int, overlap: int, align: int, scale: int) -> Axis:
        """Tiles of at most ``tile`` input pixels over ``length`` (``tile`` 0: one tile)."""
        tile = tile or length
        starts = tile_starts(length, tile, overlap, align)
        ends = [min(s + tile, length) for s in starts]
        raw = [ramp((e - s) * scale, overlap * scale, s > 0, e < length) for s, e in zip(starts, ends)]
        total = np.zeros(length * scale, dtype=np.float32)
        for s, w in zip(starts, raw):
            total[s * scale:s * scale + len(w)] += w
        weights = tuple(w / total[s * scale:s * scale + len(w)] for s, w in zip(starts, raw))
        return cls(tuple(starts), tuple(ends), weights)

    def __len__(self) -> int:
        return len(self.starts)
