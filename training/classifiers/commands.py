"""``flare train``: the classifier training command. Heavy imports stay inside it."""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.foundation.options import (COUNT, DEVICE, NON_NEGATIVE, POSITIVE, SEED, FlareCommand, InputPath, OutputPath,
                           input_size)


@click.command(cls=FlareCommand)
@click.argument("data_dir", metavar="DATA", type=InputPath("dir"))
@click.option("--model", "model_name", required=True, help="timm model name or googlenet.")
@click.option("--out", type=OutputPath("dir", made_by="run.json"), required=True, help="RUN folder.")
@click.option("--split", "split_csv", type=InputPath("file"), default=None,
              help="Split file from 'flare data split' (default: a grouped split made now, kept in RUN).")
@click.option("--labels", type=click.Choice(["fine", "macro"]), default="fine", show_default=True)
@click.option("--epochs", type=COUNT, default=50, show_default=True)
@click.option("--batch", type=COUNT, default=64, show_default=True)
@click.option("--lr", type=POSITIVE, default=2e-5, show_default=True, help="Adam learning rate (paper: 2e-5 from ImageNet weights).")
@input_size(224)
@click.option("--weights", type=InputPath("file"), default=None, help="Local weights to start from.")
@SEED
@click.option("--workers", type=NON_NEGATIVE, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--flips/--no-flips", default=False, show_default=True,
              help="Augment with the 8 flips/rotations (sky images have no up).")
@click.option("--balance/--no-balance", default=False, show_default=True,
              help="Sample every class equally often (few photos of a rare class).")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@DEVICE
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.pass_context
def train(ctx: click.Context, data_dir: Path, model_name: str, out: Path, split_csv: Path | None, labels: str, epochs: int,
          batch: int, lr: float, input_size: int, weights: Path | None, seed: int, workers: int, flips: bool,
          balance: bool, amp: bool, device: str, resume: bool) -> None:
    """Train a classifier on DATA (an ImageFolder tree or SpaceNet's layout)."""
    from flare.runtime.foundation.progress import log
    from flare.runtime.core.runs import ClassifierRun, ClassifierTraining
    from flare.training.classifiers.train import train as run_training
    from flare.training.resume import check_resumed_options

    check_resumed_options(ctx, out, ClassifierRun, ("batch", "lr", "input_size", "weights", "seed", "flips", "balance", "amp"),
                          data_dir="data", model_name="model", labels="level", split_csv=None)

    cfg = ClassifierTraining(model=model_name, data=str(Path(data_dir).resolve()), level=labels, epochs=epochs,
                             batch=batch, lr=lr, input_size=input_size, seed=seed,
                             weights=str(weights) if weights else None, amp=amp, workers=workers,
                             flips=flips, balance=balance)
    results = run_training(cfg, out, split=split_csv, resume=resume, device=device)
    log(f"test accuracy {results['test_acc']:.3f}, macro-F1 {results['test_macro_f1']:.3f} "
        f"on {results['test_images']} images; run in {out}")
