"""``flare augment all``: stage 1, stage 2 from the stage-1 originals, then the merge.

Each stage resumes on its own, skipping what its journal lists after checking that the
journal was made with the same data, model and settings (a re-run with others is refused),
and the merge, which is quick, is redone every time. So the chain can be stopped and re-run
at any point and never mixes two settings.
"""

from __future__ import annotations

import csv
from pathlib import Path

from flare.training.data.folders import link_tree
from flare.training.pipeline.merge import MergeConfig, merge
from flare.training.pipeline.stage1 import Stage1Config, run_stage1
from flare.training.pipeline.stage2 import Stage2Config, augment_stage2

def stage1_originals(stage1: Path, out: Path) -> Path:
    """An ImageFolder view of stage 1's super-resolved originals (stage 2's sources)."""
    with open(Path(stage1) / "stage1.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "original"]  # not the error rows
    return link_tree([(Path(stage1) / r["output"], r["output"]) for r in rows], out)


def augment_all(data: Path, sr: Path | None, diffusion: str | Path, out: Path,
                stage1: Stage1Config = Stage1Config(), stage2: Stage2Config = Stage2Config(),
                merge_config: MergeConfig = MergeConfig(), split: Path | None = None,
                device: str = "auto") -> Path:
    """Run the FLARE chain into ``out/stage1``, ``out/stage2`` and ``out/merged``; returns the last."""
    out = Path(out)
    run_stage1(data, sr, out / "stage1", stage1, device=device)
    sources = stage1_originals(out / "stage1", out / "stage1_originals")
    augment_stage2(sources, diffusion, out / "stage2", stage2, device=device)
    merged = out / "merged"
    merge(out / "stage1", out / "stage2", merged, merge_config, split=split)
    return merged
