"""What FLARE's stage 2 added to an experiment: generated images beside the originals they came from.

    python -m flare.benchmarks.stage2_figure EXPERIMENT OUT.png [--per-class 8]

One row per class of ``flare experiment``'s ``flare/stage2/``; each pair is a stage-1 original
(the super-resolved training image) and its first generated variant (``__gen0``). The pairs
are spread evenly over each class's sources (sorted by name), so no one picks them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flare.benchmarks.generate_figure import grid

GENERATED = "__gen0"


def pairs(experiment: Path, per_class: int, side: int) -> tuple[list[str], list[np.ndarray]]:
    """Per class, ``per_class`` (original, generated) pairs as one row of 2 x ``per_class`` images."""
    stage2, originals = experiment / "flare" / "stage2", experiment / "flare" / "stage1_originals"
    classes = sorted(p.name for p in stage2.iterdir() if p.is_dir())
    rows = []
    for cls in classes:
        generated = sorted((stage2 / cls).glob(f"*{GENERATED}.png"))
        picked = [generated[int(i)] for i in np.linspace(0, len(generated) - 1, min(per_class, len(generated)))]
        row = []
        for sample in picked:
            source = next((originals / cls).glob(sample.name.split(GENERATED)[0] + ".*"), None)
            if source is None:
                raise SystemExit(f"{sample} has no original in {originals / cls}: is {experiment} a flare experiment "
                                 "folder whose stage 2 finished?")
            for path in (source, sample):
                row.append(np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)))
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
