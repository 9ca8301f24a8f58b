"""The before / after picture of docs/commands.md: astropy's real M13 image through ``flare enhance``.

Usage::

    python -m flare.benchmarks.sr_figure SR_BUNDLE --out docs/m13_enhance.png

Left: the input pixels (display stretch, each pixel drawn as a block); middle: bicubic
upscaling; right: the enhanced FITS file's display PNG. The same crop of each, the same
stretch (the input's 0.5-99.5 percentiles, asinh).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

M13 = "io/fits/hdu/compressed/tests/data/m13.fits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/m13_enhance.png"))
    parser.add_argument("--crop", type=int, default=80, help="Side of the input crop shown (pixels).")
    args = parser.parse_args()

    import astropy
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from flare.cli import cli
    from flare.runtime.core.preprocess import StretchSpec, UnitMap

    source = Path(astropy.__file__).parent / M13
    with tempfile.TemporaryDirectory() as work:
        cli(["enhance", str(args.bundle), str(source), "--out", work], prog_name="flare", standalone_mode=False)
        after = fits.getdata(Path(work) / "m13.fits").astype(np.float64)
    before = fits.getdata(source).astype(np.float64)
    s = after.shape[0] // before.shape[0]
    shown = UnitMap(before, StretchSpec())
    c, h = before.shape[0] // 2, args.crop // 2
    crop = before[c - h:c + h, c - h:c + h]
    blocks = np.kron(shown.forward(crop), np.ones((s, s)))
    bicubic = np.asarray(Image.fromarray(crop.astype(np.float32)).resize((args.crop * s,) * 2,
                                                                         Image.Resampling.BICUBIC))
    enhanced = after[(c - h) * s:(c + h) * s, (c - h) * s:(c + h) * s]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, image, title in zip(axes, (blocks, shown.forward(bicubic), shown.forward(enhanced)),
                                (f"M13 input, {args.crop} px crop", f"bicubic x{s}", f"flare enhance x{s}")):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
