"""``flare augment`` (FLARE's two stages and their merge) and ``flare experiment``.

Only click is imported at module level; torch and diffusers load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.foundation.options import (COUNT, DEVICE, FRACTION, PIXELS, POSITIVE, SEED, SELECT, CommandGroup,
                                              FiniteRange, FlareCommand, InputPath, OutputPath, input_size)

ALPHA = click.option("--alpha", type=FRACTION, default=0.5, show_default=True, help="Fraction of the stage-1 augmented pool kept.")
BETA = click.option("--beta", type=FRACTION, default=1.0, show_default=True, help="Fraction of the stage-2 generated pool kept.")
BAND = click.option("--band", nargs=2, type=FiniteRange(0.0, 100.0), default=(0.0, 95.0), show_default=True,
                    help="Percentile band of the real samples' centroid distances a generated sample must fall in.")
EMBED = click.option("--embed", "embed_run", type=InputPath("dir"), default=None,
                     help="Classifier RUN whose features rank generated samples (default: an image descriptor).")
STEPS = click.option("--steps", type=COUNT, default=50, show_default=True, help="Sampler steps per generated image.")


@click.group(cls=CommandGroup)
def augment() -> None:
    """Build FLARE training sets: stage 1 (SR + standard), stage 2 (diffusion), merge."""


@augment.command("stage1")
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--sr", "sr_checkpoint", type=InputPath("any"), required=True,
              help="An enhance bundle ('flare export sr': the fast runtime), an official SwinIR .pth or a "
                   "train-sr RUN.")
@click.option("--out", type=OutputPath("dir", made_by="stage1.csv"), required=True)
@click.option("--size", type=PIXELS, default=512, show_default=True, help="Output side (the paper: 512).")
@click.option("--tile", type=click.IntRange(min=0), default=256, show_default=True,
              help="SR tile side in LR pixels (0: whole image).")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True, help="SR tile overlap in LR pixels.")
@SEED
@DEVICE
def stage1(data_dir: Path, sr_checkpoint: Path, out: Path, size: int, tile: int, overlap: int, seed: int,
           device: str) -> None:
    """Super-resolve every image, resize, and write it with its 5 standard augmentations."""
    from flare.runtime.foundation.progress import log
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1

    counts = run_stage1(data_dir, sr_checkpoint, out, Stage1Config(size=size, tile=tile, overlap=overlap, seed=seed),
                        device=device)
    log(f"stage 1: {counts['written']} images written for {counts['sources'] - counts['skipped']} sources "
        f"({counts['skipped']} already done, {counts['unreadable']} unreadable) in {out}; "
        f"manifest {Path(out) / 'stage1.csv'}")


@augment.command("stage2")
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--diffusion", required=True, type=InputPath("dir"),
              help="A train-diffusion RUN, a local diffusers pipeline folder (never a hub id) or a generate bundle "
                   "from 'flare export diffusion' (runs without torch).")
@click.option("--out", type=OutputPath("dir", made_by="stage2.csv"), required=True, help="Folder for generated images.")
@click.option("--per-image", type=COUNT, default=4, show_default=True, help="Generated images per source image (K).")
@STEPS
@click.option("--guidance", type=FiniteRange(min=0.0), default=8.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--sampler", type=click.Choice(["dpmpp", "ddim"]), default="dpmpp", show_default=True,
              help="DPM-Solver++ (multistep) or DDIM.")
@click.option("--order", type=click.IntRange(1, 3), default=3, show_default=True, help="DPM-Solver++ order (the authors used 3).")
@SEED
@click.option("--image-variation/--no-image-variation", default=None,
              help="Condition on the source image too (default: when the model can).")
@click.option("--strength", type=FiniteRange(0.0, 1.0, min_open=True), default=0.75, show_default=True,
              help="How far a pretrained img2img pipeline re-noises the source (image variation only).")
@click.option("--batch", type=COUNT, default=8, show_default=True, help="Images generated at once.")
@DEVICE
def stage2(data_dir: Path, diffusion: str, out: Path, per_image: int, steps: int, guidance: float, sampler: str,
           order: int, seed: int, image_variation: bool | None, strength: float, batch: int, device: str) -> None:
    """FLARE stage 2: K generated images per source image of DATA, with provenance in OUT/stage2.csv."""
    from flare.runtime.foundation.progress import log
    from flare.training.pipeline.stage2 import Stage2Config, augment_stage2

    cfg = Stage2Config(per_image=per_image, steps=steps, guidance=guidance, sampler=sampler, order=order, seed=seed,
                       image_variation=image_variation, strength=strength, batch=batch)
    summary = augment_stage2(data_dir, diffusion, out, cfg, device=device)
    log(f"stage 2: wrote {summary['written']} images ({summary['skipped']} already there, "
        f"{len(summary['errors'])} unreadable sources); provenance in {summary['manifest']}")


@augment.command("merge")
@click.option("--stage1", "stage1_dir", type=InputPath("dir"), required=True, help="Output folder of stage 1.")
@click.option("--stage2", "stage2_dir", type=InputPath("dir"), required=True, help="Output folder of stage 2.")
@click.option("--out", type=OutputPath("dir", made_by="merge.csv"), required=True)
@ALPHA
@BETA
@SELECT
@BAND
@EMBED
@click.option("--split", "split_csv", type=InputPath("file"), default=None,
              help="Split of the originals to carry over to their variants (default: a new grouped split).")
@SEED
def merge_command(stage1_dir: Path, stage2_dir: Path, out: Path, alpha: float, beta: float, select: str,
                  band: tuple[float, float], embed_run: Path | None, split_csv: Path | None, seed: int) -> None:
    """Keep alpha of the stage-1 pool and beta of the stage-2 pool per class; write OUT/merge.csv."""
    from flare.training.pipeline.merge import MergeConfig, merge

    merge(stage1_dir, stage2_dir, out, MergeConfig(alpha=alpha, beta=beta, select=select, band=band, seed=seed),
          split=split_csv, embed_run=embed_run)
    click.echo(f"training set: {out} (train it with: flare train {out} --split {Path(out) / 'merge.csv'} ...)")


@augment.command("all")
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--sr", "sr_checkpoint", type=InputPath("any"), required=True,
              help="An enhance bundle ('flare export sr': the fast runtime), an official SwinIR .pth or a "
                   "train-sr RUN.")
@click.option("--diffusion", required=True, type=InputPath("dir"), help="train-diffusion RUN or a local diffusers pipeline folder.")
@click.option("--out", type=OutputPath("dir", made_by="stage1/stage1.csv"), required=True)
@click.option("--size", type=PIXELS, default=512, show_default=True, help="Stage-1 output side.")
@click.option("--per-image", type=COUNT, default=4, show_default=True, help="Stage-2 samples per original.")
@STEPS
@click.option("--guidance", type=FiniteRange(min=0.0), default=8.0, show_default=True)
@click.option("--sampler", type=click.Choice(["dpmpp", "ddim"]), default="dpmpp", show_default=True)
@ALPHA
@BETA
@SELECT
@BAND
@SEED
@DEVICE
def all_command(data_dir: Path, sr_checkpoint: Path, diffusion: str, out: Path, size: int, per_image: int, steps: int,
                guidance: float, sampler: str, alpha: float, beta: float, select: str, band: tuple[float, float],
                seed: int, device: str) -> None:
    """Stage 1, stage 2 from the stage-1 originals, and the merge, resumable as a whole."""
    from flare.training.pipeline.merge import MergeConfig
    from flare.training.pipeline.chain import augment_all
    from flare.training.pipeline.stage1 import Stage1Config
    from flare.training.pipeline.stage2 import Stage2Config

    merged = augment_all(data_dir, sr_checkpoint, diffusion, out, Stage1Config(size=size, seed=seed),
                         Stage2Config(per_image=per_image, steps=steps, guidance=guidance, sampler=sampler, seed=seed),
                         MergeConfig(alpha=alpha, beta=beta, select=select, band=band, seed=seed), device=device)
    click.echo(f"FLARE training set: {merged} (flare train {merged} --split {merged / 'merge.csv'} ...)")


@click.command(cls=FlareCommand)
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="experiment.json"), required=True, help="Experiment folder (re-running resumes).")
@click.option("--model", "models", multiple=True, default=("resnet18",), show_default=True,
              help="Backbone(s); the paper's: --model resnet50 --model googlenet --model densenet121 "
                   "--model vit_base_patch16_224.")
@click.option("--epochs", type=COUNT, default=15, show_default=True)
@click.option("--batch", type=COUNT, default=32, show_default=True)
@click.option("--lr", type=POSITIVE, default=1e-3, show_default=True)
@input_size(64)
@click.option("--size", type=PIXELS, default=128, show_default=True, help="Stage-1 output side (the paper: 512).")
@click.option("--sr", type=InputPath("any"), default=None,
              help="SwinIR checkpoint or train-sr RUN (default: train one on DATA/hr and DATA/lr).")
@click.option("--diffusion", type=InputPath("dir"), default=None, help="train-diffusion RUN or local pipeline folder (default: train one).")
@click.option("--diffusion-epochs", type=COUNT, default=40, show_default=True)
@click.option("--per-image", type=COUNT, default=4, show_default=True, help="Stage-2 samples per original.")
@click.option("--steps", type=COUNT, default=20, show_default=True, help="Sampler steps per generated image (the paper: 50).")
@click.option("--guidance", type=FiniteRange(min=0.0), default=4.0, show_default=True, help="Classifier-free guidance (the paper: 8).")
@ALPHA
@BETA
@SELECT
@click.option("--ood", multiple=True, type=InputPath("dir"), help="Out-of-domain ImageFolder(s) to score on.")
@SEED
@click.option("--seeds", type=COUNT, default=3, show_default=True,
              help="Backbone seeds (--seed and the ones after it): each cell is their mean with a 95%% interval.")
@DEVICE
def experiment(data_dir: Path, out: Path, models: tuple[str, ...], epochs: int, batch: int, lr: float,
               input_size: int, size: int, sr: Path | None, diffusion: str | None, diffusion_epochs: int, per_image: int,
               steps: int, guidance: float, alpha: float, beta: float, select: str, ood: tuple[Path, ...],
               seed: int, seeds: int, device: str) -> None:
    """Raw_LR vs Raw_Aug_LR vs FLARE on one leak-free split: a Markdown table and JSON."""
    from flare.training.pipeline.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(models=models, seeds=seeds, epochs=epochs, batch=batch, lr=lr, input_size=input_size, seed=seed,
                           size=size, sr=str(sr) if sr else None, diffusion=str(diffusion) if diffusion else None,
                           diffusion_epochs=diffusion_epochs, per_image=per_image, steps=steps,
                           guidance=guidance, alpha=alpha, beta=beta, select=select, ood=tuple(map(str, ood)))
    run_experiment(data_dir, out, cfg, device=device)
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"results: {Path(out) / 'results.md'} and {Path(out) / 'results.json'}")
