"""``flare train-sr``: train SwinIR on LR/HR pairs. Heavy imports stay inside the command."""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.core.runs import SR_LOSSES
from flare.runtime.foundation.options import COUNT, DEVICE, PIXELS, POSITIVE, SEED, FlareCommand, InputPath, OutputPath


@click.command("train-sr", cls=FlareCommand)
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="run.json"), required=True, help="RUN folder.")
@click.option("--arch", default="tiny_x4", show_default=True,
              help="SwinIR configuration: tiny_x4 (CPU-friendly), realsr_l_x4 (the paper's SwinIR-L), "
                   "realsr_m_x4, classical_x2/x3/x4/x8, lightweight_x2/x3/x4.")
@click.option("--scale", type=click.IntRange(1, 8), default=4, show_default=True)
@click.option("--low-res-dir", type=InputPath("dir"), default=None,
              help="Real LR images with the HR files' relative paths (default: degrade the HR images).")
@click.option("--epochs", type=COUNT, default=20, show_default=True)
@click.option("--steps-per-epoch", type=COUNT, default=100, show_default=True, help="Training batches per epoch.")
@click.option("--batch", type=COUNT, default=8, show_default=True)
@click.option("--patch", type=PIXELS, default=64, show_default=True, help="HR patch side.")
@click.option("--lr", type=POSITIVE, default=2e-4, show_default=True, help="Adam learning rate.")
@click.option("--loss", type=click.Choice(SR_LOSSES), default="l1", show_default=True,
              help="Pixel loss: l1 (SwinIR's; sharper) or mse (what PSNR scores: where detail cannot be recovered, "
                   "such as unresolved stars, it predicts their mean instead of guessing).")
@SEED
@click.option("--bicubic-residual/--no-bicubic-residual", default=None,
              help="Learn a correction on top of bicubic upscaling, starting from bicubic itself "
                   "(default: on for our own tiny_x4 and small_x4).")
@DEVICE
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@click.pass_context
def train_sr(ctx: click.Context, data_dir: Path, out: Path, arch: str, scale: int, low_res_dir: Path | None, epochs: int,
             steps_per_epoch: int, batch: int, patch: int, lr: float, loss: str, seed: int, bicubic_residual: bool | None,
             device: str, resume: bool) -> None:
    """Train SwinIR on LR/HR pairs made from the images in DATA (PSNR/SSIM validation)."""
    from flare.runtime.foundation.progress import log
    from flare.runtime.core.runs import SRRun, SRTraining
    from flare.training.resume import check_resumed_options
    from flare.training.sr.train import train_sr as run

    check_resumed_options(ctx, out, SRRun, ("arch", "scale", "low_res_dir", "steps_per_epoch", "batch", "patch", "lr",
                                            "loss", "seed", "bicubic_residual"), data_dir="data")

    cfg = SRTraining(data=str(Path(data_dir).resolve()), arch=arch, scale=scale, patch=patch, batch=batch,
                        epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr, loss=loss, seed=seed,
                        bicubic_residual=bicubic_residual,
                        low_res_dir=str(Path(low_res_dir).resolve()) if low_res_dir else None)
    scores = run(cfg, out, resume=resume, device=device)
    if scores:
        log(f"validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f} "
            f"(bicubic {scores['bicubic_psnr']:.2f} dB, {scores['bicubic_ssim']:.4f}); run in {out}")
