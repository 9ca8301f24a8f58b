"""``flare augment``: FLARE's two augmentation stages and their merge."""

from __future__ import annotations

from pathlib import Path

import click

from training.diffusion_commands import stage2
from training.sr_commands import stage1

ALPHA = click.option("--alpha", default=0.5, show_default=True, help="Fraction of the stage-1 augmented pool kept.")
BETA = click.option("--beta", default=1.0, show_default=True, help="Fraction of the stage-2 generated pool kept.")
SELECT = click.option("--select", type=click.Choice(["random", "percentile"]), default="random", show_default=True,
                      help="random (the authors' baseline) or percentile (drop off-class generations).")
BAND = click.option("--band", nargs=2, type=float, default=(0.0, 95.0), show_default=True,
                    help="Percentile band of the real samples' centroid distances a generated sample must fall in.")
EMBED = click.option("--embed", "embed_run", type=click.Path(path_type=Path), default=None,
                     help="Classifier RUN whose features rank generated samples (default: an image descriptor).")


@click.group()
def augment() -> None:
    """Build FLARE training sets: stage 1 (SR + standard), stage 2 (diffusion), merge."""


augment.add_command(stage1)
augment.add_command(stage2)


@augment.command("merge")
@click.option("--stage1", "stage1_dir", type=click.Path(path_type=Path), required=True)
@click.option("--stage2", "stage2_dir", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@ALPHA
@BETA
@SELECT
@BAND
@EMBED
@click.option("--split", "split_csv", type=click.Path(path_type=Path), default=None,
              help="Split of the originals to carry over to their variants (default: a new grouped split).")
@click.option("--seed", default=0, show_default=True)
def merge_command(stage1_dir: Path, stage2_dir: Path, out: Path, alpha: float, beta: float, select: str,
                  band: tuple[float, float], embed_run: Path | None, split_csv: Path | None, seed: int) -> None:
    """Keep alpha of the stage-1 pool and beta of the stage-2 pool per class; write OUT/merge.csv."""
    from training.merge import MergeConfig, merge

    merge(stage1_dir, stage2_dir, out, MergeConfig(alpha=alpha, beta=beta, select=select, band=band, seed=seed),
          split=split_csv, embed_run=embed_run)
    click.echo(f"training set: {out} (train it with: flare train {out} --split {Path(out) / 'merge.csv'} ...)")


@augment.command("all")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--sr", "sr_checkpoint", type=click.Path(path_type=Path), required=True,
              help="Official SwinIR .pth file or a train-sr RUN.")
@click.option("--diffusion", required=True, help="train-diffusion RUN or a local diffusers pipeline folder.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--size", default=512, show_default=True, help="Stage-1 output side.")
@click.option("--per-image", default=4, show_default=True, help="Stage-2 samples per original.")
@click.option("--steps", default=50, show_default=True)
@click.option("--guidance", default=8.0, show_default=True)
@click.option("--sampler", type=click.Choice(["dpmpp", "ddim"]), default="dpmpp", show_default=True)
@ALPHA
@BETA
@SELECT
@BAND
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def all_command(data_dir: Path, sr_checkpoint: Path, diffusion: str, out: Path, size: int, per_image: int, steps: int,
                guidance: float, sampler: str, alpha: float, beta: float, select: str, band: tuple[float, float],
                seed: int, device: str) -> None:
    """Stage 1, stage 2 from the stage-1 originals, and the merge, resumable as a whole."""
    from training.merge import MergeConfig
    from training.pipeline import augment_all
    from training.stage1 import Stage1Config
    from training.stage2 import Stage2Config

    merged = augment_all(data_dir, sr_checkpoint, diffusion, out, Stage1Config(size=size, seed=seed),
                         Stage2Config(per_image=per_image, steps=steps, guidance=guidance, sampler=sampler, seed=seed),
                         MergeConfig(alpha=alpha, beta=beta, select=select, band=band, seed=seed), device=device)
    click.echo(f"FLARE training set: {merged} (flare train {merged} --split {merged / 'merge.csv'} ...)")
