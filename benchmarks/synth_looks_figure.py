"""The picture of docs/data.md: the synthetic sky's two looks side by side, four images per class.

Usage::

    python -m flare.benchmarks.synth_looks_figure --out docs/synth_looks.jpg

Image ``j`` of class ``i`` is drawn from the generator seeded ``[5, i, j]`` in both looks, so
each column pair shares its seed, not its picture (the looks draw differently).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flare.runtime.core.taxonomy import FINE_CLASSES
from flare.training.data.synth import LOOKS, render

TILE, PER_LOOK, LABEL, GAP, HEAD = 80, 4, 90, 10, 22


def figure() -> Image.Image:
    """One row per class: the classic look's images, a gap, then the photo look's."""
    width = LABEL + len(LOOKS) * (TILE * PER_LOOK + GAP)
    canvas = Image.new("RGB", (width, HEAD + TILE * len(FINE_CLASSES)), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for k, look in enumerate(LOOKS):
        draw.text((LABEL + k * (TILE * PER_LOOK + GAP) + 4, 4), look, fill=(220, 220, 220))
    for i, name in enumerate(FINE_CLASSES):
        draw.text((4, HEAD + TILE * i + TILE // 2 - 6), name, fill=(220, 220, 220))
        for k, look in enumerate(LOOKS):
            for j in range(PER_LOOK):
                img = render(name, np.random.default_rng([5, i, j]), 128, look)
                tile = Image.fromarray(img).resize((TILE, TILE), Image.Resampling.LANCZOS)
                canvas.paste(tile, (LABEL + k * (TILE * PER_LOOK + GAP) + TILE * j, HEAD + TILE * i))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/synth_looks.jpg"))
    args = parser.parse_args()
    figure().save(args.out, quality=85)
    print(args.out)


if __name__ == "__main__":
    main()
