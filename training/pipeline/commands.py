"""``flare augment`` (FLARE's two stages and their merge) and ``flare experiment``.

Only click is imported at module level; torch and diffusers load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from flare.options import DEVICE, SELECT, input_size

ALPHA = click.option("--alpha", default=0.5, show_default=True, help="Fraction of the stage-1 augmented pool kept.")
BETA = click.option("--beta", default=1.0, show_default=True, help="Fraction of the stage-2 generated pool kept.")
BAND = click.option("--band", nargs=2, type=float, default=(0.0, 95.0), show_default=True,
                    help="Percentile band of the real samples' centroid distances a generated sample must fall in.")
EMBED = click.option("--embed", "embed_run", type=click.Path(path_type=Path), default=None,
                     help="Classifier RUN whose features rank generated samples (default: an image descriptor).")
STEPS = click.option("--steps", default=50, show_default=True, help="Sampler steps per generated image.")


@click.group()
def augment() -> None:
    """Build FLARE training sets: stage 1 (SR + standard), stage 2 (diffusion), merge."""


@augment.command("stage1")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--sr", "sr_checkpoint", type=click.Path(path_type=Path), required=True,
              help="Official SwinIR .pth file or a train-sr RUN.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--size", default=512, show_default=True, help="Output side (the paper: 512).")
@click.option("--tile", default=256, show_default=True, help="SR tile side in LR pixels (0: whole image).")
@click.option("--overlap", default=32, show_default=True)
@click.option("--seed", default=0, show_default=True)
@DEVICE
def stage1(data_dir: Path, sr_checkpoint: Path, out: Path, size: int, tile: int, overlap: int, seed: int,
           device: str) -> None:
    """Super-resolve every image, resize, and write it with its 5 standard augmentations."""
    from flare.runtime.progress import log
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1

    counts = run_stage1(data_dir, sr_checkpoint, out, Stage1Config(size=size, tile=tile, overlap=overlap, seed=seed),
                        device=device)
    log(f"stage 1: {counts['written']} images written for {counts['sources'] - counts['skipped']} sources "
        f"({counts['skipped']} already done, {counts['unreadable']} unreadable) in {out}; "
        f"manifest {Path(out) / 'stage1.csv'}")


@augment.command("stage2")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--diffusion", required=True, type=str,
              help="A train-diffusion RUN folder or a local diffusers pipeline folder (never a hub id).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for generated images.")
@click.option("--per-image", default=4, show_default=True, help="Generated images per source image (K).")
@STEPS
@click.option("--guidance", default=8.0, show_default=True, help="Classifier-free guidance scale.")
@click.option("--sampler", type=click.Choice(["dpmpp", "ddim"]), default="dpmpp", show_default=True,
              help="DPM-Solver++ (multistep) or DDIM.")
@click.option("--order", default=3, show_default=True, help="DPM-Solver++ order (the authors used 3).")
@click.option("--seed", default=0, show_default=True)
@click.option("--image-variation/--no-image-variation", default=None,
              help="Condition on the source image too (default: when the model can).")
@click.option("--strength", default=0.75, show_default=True,
              help="How far a pretrained img2img pipeline re-noises the source (image variation only).")
@click.option("--batch", default=8, show_default=True, help="Images generated at once.")
@DEVICE
def stage2(data_dir: Path, diffusion: str, out: Path, per_image: int, steps: int, guidance: float, sampler: str,
           order: int, seed: int, image_variation: bool | None, strength: float, batch: int, device: str) -> None:
    """FLARE stage 2: K generated images per source image of DATA, with provenance in OUT/stage2.csv."""
    from flare.runtime.progress import log
    from flare.training.pipeline.stage2 import Stage2Config, augment_stage2

    cfg = Stage2Config(per_image=per_image, steps=steps, guidance=guidance, sampler=sampler, order=order, seed=seed,
                       image_variation=image_variation, strength=strength, batch=batch)
    summary = augment_stage2(data_dir, diffusion, out, cfg, device=device)
    log(f"stage 2: wrote {summary['written']} images ({summary['skipped']} already there, "
        f"{len(summary['errors'])} unreadable sources); provenance in {summary['manifest']}")


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
    from flare.training.pipeline.merge import MergeConfig, merge

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
@STEPS
@click.option("--guidance", default=8.0, show_default=True)
@click.option("--sampler", type=click.Choice(["dpmpp", "ddim"]), default="dpmpp", show_default=True)
@ALPHA
@BETA
@SELECT
@BAND
@click.option("--seed", default=0, show_default=True)
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


@click.command()
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Experiment folder (re-running resumes).")
@click.option("--model", "models", multiple=True, default=("resnet18",), show_default=True,
              help="Backbone(s); the paper's: --model resnet50 --model googlenet --model densenet121 "
                   "--model vit_base_patch16_224.")
@click.option("--epochs", default=15, show_default=True)
@click.option("--batch", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@input_size(64)
@click.option("--size", default=128, show_default=True, help="Stage-1 output side (the paper: 512).")
@click.option("--sr", type=click.Path(path_type=Path), default=None,
              help="SwinIR checkpoint or train-sr RUN (default: train one on DATA/hr and DATA/lr).")
@click.option("--diffusion", default=None, help="train-diffusion RUN or local pipeline folder (default: train one).")
@click.option("--diffusion-epochs", default=40, show_default=True)
@click.option("--per-image", default=4, show_default=True, help="Stage-2 samples per original.")
@click.option("--steps", default=20, show_default=True, help="Sampler steps per generated image (the paper: 50).")
@click.option("--guidance", default=4.0, show_default=True, help="Classifier-free guidance (the paper: 8).")
@click.option("--alpha", default=0.5, show_default=True)
@click.option("--beta", default=1.0, show_default=True)
@SELECT
@click.option("--ood", multiple=True, type=click.Path(path_type=Path), help="Out-of-domain ImageFolder(s) to score on.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def experiment(data_dir: Path, out: Path, models: tuple[str, ...], epochs: int, batch: int, lr: float,
               input_size: int, size: int, sr: Path | None, diffusion: str | None, diffusion_epochs: int, per_image: int,
               steps: int, guidance: float, alpha: float, beta: float, select: str, ood: tuple[Path, ...],
               seed: int, device: str) -> None:
    """Raw_LR vs Raw_Aug_LR vs FLARE on one leak-free split: a Markdown table and JSON."""
    from flare.training.pipeline.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(models=models, epochs=epochs, batch=batch, lr=lr, input_size=input_size, seed=seed,
                           size=size, sr=str(sr) if sr else None, diffusion=diffusion,
                           diffusion_epochs=diffusion_epochs, per_image=per_image, steps=steps,
                           guidance=guidance, alpha=alpha, beta=beta, select=select, ood=tuple(map(str, ood)))
    run_experiment(data_dir, out, cfg, device=device)
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"results: {Path(out) / 'results.md'} and {Path(out) / 'results.json'}")
