"""``flare train-diffusion``: train FLARE stage 2's latent diffusion model.

Only click is imported at module level; torch and diffusers load inside the commands so
``flare --help`` stays fast and works without the ``train`` extra.
"""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.foundation.options import (COUNT, DEVICE, NON_NEGATIVE, PIXELS, POSITIVE, SEED, FiniteRange, FlareCommand,
                                              InputPath, OutputPath)


@click.command("train-diffusion", cls=FlareCommand)
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="run.json"), required=True, help="RUN folder.")
@click.option("--config", "config_name", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True,
              help="Model size: tiny (64 px, CPU minutes) or paper (512 px, SD-sized, GPU).")
@click.option("--resolution", type=PIXELS, default=None,
              help="Side in pixels of the images the model learns and generates (default: the config's).")
@click.option("--epochs", type=COUNT, default=100, show_default=True, help="UNet epochs.")
@click.option("--vae-epochs", type=NON_NEGATIVE, default=10, show_default=True, help="VAE epochs before the UNet (0 with --vae).")
@click.option("--vae-colour-warmup", type=NON_NEGATIVE, default=0, show_default=True,
              help="VAE batches on the most colourful eighth of the images before its epochs (an experiment that "
                   "did not keep colour reliably; for colour on real photos use --vae-epochs 100 --vae-lr 2e-4; none "
                   "with --vae).")
@click.option("--batch", type=COUNT, default=32, show_default=True, help="UNet batch size.")
@click.option("--vae-batch", type=COUNT, default=16, show_default=True, help="VAE batch size.")
@click.option("--lr", type=POSITIVE, default=5e-4, show_default=True, help="UNet AdamW learning rate.")
@click.option("--vae-lr", type=POSITIVE, default=1e-3, show_default=True, help="VAE Adam learning rate.")
@click.option("--prediction", type=click.Choice(["epsilon", "v_prediction"]), default="epsilon", show_default=True)
@click.option("--image-cond/--no-image-cond", default=None,
              help="Train the source-image condition for image variation (default: on).")
@click.option("--vae", "vae_dir", type=InputPath("dir"), default=None,
              help="Local AutoencoderKL (or pipeline) folder saved with save_pretrained, to reuse instead of training one.")
@click.option("--text-encoder", type=InputPath("dir"), default=None,
              help="Local CLIP text encoder + tokenizer folder (or pipeline): encode the real class prompts.")
@click.option("--flips/--no-flips", "dihedral", default=True, show_default=True,
              help="Augment with the 8 flips/rotations (sky images have no up).")
@click.option("--sample-every", type=COUNT, default=1, show_default=True, help="UNet epochs between sample grids.")
@click.option("--sample-steps", type=COUNT, default=25, show_default=True, help="Sampler steps for the grids.")
@click.option("--sample-guidance", type=FiniteRange(min=0.0), default=4.0, show_default=True, help="Guidance scale for the grids.")
@SEED
@DEVICE
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.pass_context
def train_diffusion(ctx: click.Context, data_dir: Path, out: Path, config_name: str, resolution: int | None, epochs: int,
                    vae_epochs: int, vae_colour_warmup: int, batch: int, vae_batch: int, lr: float, vae_lr: float,
                    prediction: str, image_cond: bool | None, vae_dir: Path | None, text_encoder: Path | None, dihedral: bool,
                    sample_every: int, sample_steps: int, sample_guidance: float, seed: int, device: str,
                    resume: bool) -> None:
    """Train the stage-2 latent diffusion model on DATA (one sub-folder per class)."""
    from flare.runtime.foundation.progress import log
    from flare.runtime.core.runs import DiffusionRun, DiffusionTraining
    from flare.training.diffusion.train import train_diffusion as run
    from flare.training.resume import check_resumed_options

    check_resumed_options(ctx, out, DiffusionRun, (
        "resolution", "vae_epochs", "vae_colour_warmup", "batch", "vae_batch", "lr", "vae_lr", "prediction", "image_cond",
        "text_encoder", "dihedral", "sample_every", "sample_steps", "sample_guidance", "seed"),
        data_dir="data", config_name="config", vae_dir="vae")

    cfg = DiffusionTraining(
        data=str(Path(data_dir).resolve()), config=config_name, resolution=resolution, epochs=epochs,
        vae_epochs=vae_epochs, vae_colour_warmup=vae_colour_warmup, batch=batch, vae_batch=vae_batch, lr=lr,
        vae_lr=vae_lr, prediction=prediction, image_cond=image_cond, vae=str(vae_dir.resolve()) if vae_dir else None,
        text_encoder=str(text_encoder.resolve()) if text_encoder else None, dihedral=dihedral,
        sample_every=sample_every, sample_steps=sample_steps, sample_guidance=sample_guidance, seed=seed)
    summary = run(cfg, out, resume=resume, device=device)
    log(f"trained {summary['epochs']} epochs in {summary['seconds']:.0f} s on {summary['device']}; run in {out}")
