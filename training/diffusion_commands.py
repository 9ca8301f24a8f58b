"""Click commands for FLARE stage 2: ``flare train-diffusion`` and ``flare augment stage2``.

Only click is imported at module level; torch and diffusers load inside the commands so
``flare --help`` stays fast and works without the ``train`` extra.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train-diffusion")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="RUN folder.")
@click.option("--config", "config_name", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True,
              help="Model size: tiny (64 px, CPU minutes) or paper (512 px, SD-sized, GPU).")
@click.option("--image-size", type=int, default=None, help="Override the config's image side in pixels.")
@click.option("--epochs", default=100, show_default=True, help="UNet epochs.")
@click.option("--vae-epochs", default=10, show_default=True, help="VAE epochs before the UNet (0 with --vae).")
@click.option("--batch", default=32, show_default=True, help="UNet batch size.")
@click.option("--vae-batch", default=16, show_default=True, help="VAE batch size.")
@click.option("--lr", default=5e-4, show_default=True, help="UNet AdamW learning rate.")
@click.option("--vae-lr", default=1e-3, show_default=True, help="VAE Adam learning rate.")
@click.option("--prediction", type=click.Choice(["epsilon", "v_prediction"]), default="epsilon", show_default=True)
@click.option("--image-cond/--no-image-cond", default=None,
              help="Train the source-image condition for image variation (default: on).")
@click.option("--vae", "vae_dir", type=str, default=None,
              help="Local AutoencoderKL (or pipeline) folder saved with save_pretrained, to reuse instead of training one.")
@click.option("--text-encoder", type=str, default=None,
              help="Local CLIP text encoder + tokenizer folder (or pipeline): encode the real class prompts.")
@click.option("--flips/--no-flips", "dihedral", default=True, show_default=True,
              help="Augment with the 8 flips/rotations (sky images have no up).")
@click.option("--sample-every", default=1, show_default=True, help="UNet epochs between sample grids.")
@click.option("--sample-steps", default=25, show_default=True, help="Sampler steps for the grids.")
@click.option("--sample-guidance", default=4.0, show_default=True, help="Guidance scale for the grids.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
def train_diffusion(data_dir: Path, out: Path, config_name: str, image_size: int | None, epochs: int,
                    vae_epochs: int, batch: int, vae_batch: int, lr: float, vae_lr: float, prediction: str,
                    image_cond: bool | None, vae_dir: str | None, text_encoder: str | None, dihedral: bool,
                    sample_every: int, sample_steps: int, sample_guidance: float, seed: int, device: str,
                    resume: bool) -> None:
    """Train the stage-2 latent diffusion model on DATA (one sub-folder per class)."""
    from runtime.progress import log
    from training.train_diffusion import DiffusionTrainConfig
    from training.train_diffusion import train_diffusion as run

    cfg = DiffusionTrainConfig(
        data=str(Path(data_dir).resolve()), config=config_name, image_size=image_size, epochs=epochs,
        vae_epochs=vae_epochs, batch=batch, vae_batch=vae_batch, lr=lr, vae_lr=vae_lr, prediction=prediction,
        image_cond=image_cond, vae=vae_dir, text_encoder=text_encoder, dihedral=dihedral,
        sample_every=sample_every, sample_steps=sample_steps, sample_guidance=sample_guidance, seed=seed)
    summary = run(cfg, out, resume=resume, device=device)
    log(f"trained {summary['epochs']} epochs in {summary['seconds']:.0f} s on {summary['device']}; run in {out}")


@click.command("stage2")
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--diffusion", required=True, type=str,
              help="A train-diffusion RUN folder or a local diffusers pipeline folder (never a hub id).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for generated images.")
@click.option("--per-image", default=4, show_default=True, help="Generated images per source image (K).")
@click.option("--steps", default=50, show_default=True, help="Sampler steps.")
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
@click.option("--device", default="auto", show_default=True)
def stage2(data_dir: Path, diffusion: str, out: Path, per_image: int, steps: int, guidance: float, sampler: str,
           order: int, seed: int, image_variation: bool | None, strength: float, batch: int, device: str) -> None:
    """FLARE stage 2: K generated images per source image of DATA, with provenance in OUT/stage2.csv."""
    from runtime.progress import log
    from training.stage2 import Stage2Config, augment_stage2

    cfg = Stage2Config(per_image=per_image, steps=steps, guidance=guidance, sampler=sampler, order=order, seed=seed,
                       image_variation=image_variation, strength=strength, batch=batch)
    summary = augment_stage2(data_dir, diffusion, out, cfg, device=device)
    log(f"stage 2: wrote {summary['written']} images ({summary['skipped']} already there, "
        f"{len(summary['errors'])} unreadable sources); provenance in {summary['manifest']}")
