"""A real out-of-domain set for ``flare experiment`` on real photos: tiles of the Hubble Deep Field.

scikit-image ships the Hubble Deep Field (``skimage.data.hubble_deep_field``), a real field
made of distant galaxies and nothing else of note, so every tile is labelled galaxy. Tiles
are cut at the HR side and degraded to LR twins with the data's own degradation
(:func:`flare.training.data.synth.degrade`), the resolution the experiment's backbones see.
astropy's sample images are not used here: the one with a named object is M 13, a Messier
object (held out from everything), and the others show no object of a class. Usage::

    python -m flare.benchmarks.real_ood --out /tmp/ood_hdf
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def hubble_tiles(out: Path, size: int = 128, scale: int = 4, seed: int = 0) -> int:
    """Write ``out/galaxy/hdf_<row>_<col>.png`` LR tiles; returns how many."""
    from skimage import data

    from flare.runtime.foundation.atomic import save_png
    from flare.training.data.synth import degrade

    field = data.hubble_deep_field()
    rows, cols = field.shape[0] // size, field.shape[1] // size
    for i in range(rows):
        for j in range(cols):
            tile = np.ascontiguousarray(field[i * size:(i + 1) * size, j * size:(j + 1) * size, :3])
            lr = degrade(tile, np.random.default_rng([seed, i, j]), scale)
            save_png(lr, out / "galaxy" / f"hdf_{i}_{j}.png")
    return rows * cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    print(f"{hubble_tiles(args.out, args.size, args.scale)} tiles written to {args.out}")


if __name__ == "__main__":
    main()
