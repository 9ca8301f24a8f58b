"""What FLARE's stage 2 added to an experiment: generated images beside the originals they came from.

    python -m flare.benchmarks.stage2_figure EXPERIMENT OUT.png [--per-class 8]

One row per class of ``flare experiment``'s ``flare/stage2/``; each pair is a stage-1 original
(the super-resolved training image) and its first generated variant (``__gen0``), as
``stage2.csv`` records them. The pairs
are spread evenly over each class's sources (sorted by name), so no one picks them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flare.benchmarks.generate_figure import grid

def pairs(experiment: Path, per_class: int, side: int) -> tuple[list[str], list[np.ndarray]]:
    """Per class, ``per_class`` (original, generated) pairs as one row of 2 x ``per_class`` images,
    read from stage 2's own provenance record (``stage2.csv``: each output and its source)."""
    import csv

    from flare.training.pipeline.stage2 import MANIFEST, output_for

    stage2, originals = experiment / "flare" / "stage2", experiment / "flare" / "stage1_originals"
    with open(stage2 / MANIFEST, newline="", encoding="utf-8") as f:
        firsts = [r for r in csv.DictReader(f) if r["output"] == output_for(r["source"], 0)]
    classes = sorted({r["class"] for r in firsts})
    rows = []
    for cls in classes:
        mine = sorted((r for r in firsts if r["class"] == cls), key=lambda r: r["source"])
        picked = [mine[int(i)] for i in np.linspace(0, len(mine) - 1, min(per_class, len(mine)))]
        row = [np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
               for r in picked for path in (originals / r["source"], stage2 / r["output"])]
        rows.append(np.stack(row))
    return classes, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="A flare experiment folder (with flare/stage2/).")
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--side", type=int, default=64, help="Side in pixels of each image in the figure.")
    args = parser.parse_args()
    classes, rows = pairs(args.experiment, args.per_class, args.side)
    body = Image.fromarray(grid(rows))
    canvas = Image.new("RGB", (body.width, body.height + 22), "white")
    canvas.paste(body, (0, 22))
    ImageDraw.Draw(canvas).text((4, 4), "pairs: stage-1 original, its stage-2 image; rows: " + ", ".join(classes),
                                fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"{args.out}: {sum(len(r) // 2 for r in rows)} pairs")


if __name__ == "__main__":
    main()
