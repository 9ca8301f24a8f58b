"""Click commands for data and training. Heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """Make and split image data sets (no torch needed)."""


@data.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for hr/ and lr/.")
@click.option("--per-class", default=40, show_default=True, help="Images per class.")
@click.option("--size", default=128, show_default=True, help="HR side in pixels.")
@click.option("--seed", default=0, show_default=True)
@click.option("--scale", default=4, show_default=True, help="HR/LR scale factor.")
def synth(out: Path, per_class: int, size: int, seed: int, scale: int) -> None:
    """Procedural sky images for the 8 classes, HR and their degraded LR twins."""
    from runtime.progress import log, progress_bar
    from training.synth import SynthConfig, synthesize

    config = SynthConfig(per_class=per_class, size=size, seed=seed, scale=scale)
    with progress_bar(per_class * 8, "synthesizing") as advance:
        summary = synthesize(out, config, progress=advance)
    log(f"wrote {summary['count']} images: HR in {summary['hr']}, LR in {summary['lr']}")


@data.command()
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Split CSV to write.")
@click.option("--group-regex", default=None, help="Regex whose 'group' (or first) group names the original image.")
@click.option("--val", default=0.15, show_default=True)
@click.option("--test", default=0.15, show_default=True)
@click.option("--seed", default=0, show_default=True)
def split(data_dir: Path, out: Path, group_regex: str | None, val: float, test: float, seed: int) -> None:
    """Leak-free, class-stratified split grouped by original image."""
    from collections import Counter

    from runtime.progress import log
    from training.data import scan_image_folder, split_groups, write_split

    samples, _ = scan_image_folder(data_dir)
    rows = split_groups(samples, val=val, test=test, seed=seed, group_regex=group_regex)
    write_split(rows, out)
    counts = Counter(r["split"] for r in rows)
    groups = len(set(r["group"] for r in rows))
    log(f"{out}: {len(rows)} files in {groups} groups: "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test")))


@click.command()
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--model", "model_name", required=True, help="timm model name or googlenet.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="RUN folder.")
@click.option("--split", "split_csv", type=click.Path(path_type=Path), default=None,
              help="Split file from 'flare data split' (default: a grouped split made now, kept in RUN).")
@click.option("--labels", type=click.Choice(["fine", "macro"]), default="fine", show_default=True)
@click.option("--epochs", default=50, show_default=True)
@click.option("--batch", default=64, show_default=True)
@click.option("--lr", default=2e-5, show_default=True, help="Adam learning rate (paper: 2e-5 from ImageNet weights).")
@click.option("--img-size", default=224, show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Local weights to start from.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--device", default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def train(data_dir: Path, model_name: str, out: Path, split_csv: Path | None, labels: str, epochs: int,
          batch: int, lr: float, img_size: int, weights: Path | None, seed: int, workers: int, amp: bool,
          device: str, resume: bool) -> None:
    """Train a classifier on DATA (an ImageFolder tree or SpaceNet's layout)."""
    from runtime.progress import log
    from training.train import TrainConfig
    from training.train import train as run_training

    cfg = TrainConfig(model=model_name, data=str(Path(data_dir).resolve()), level=labels, epochs=epochs,
                      batch=batch, lr=lr, img_size=img_size, seed=seed,
                      weights=str(weights) if weights else None, amp=amp, workers=workers)
    results = run_training(cfg, out, split=split_csv, resume=resume, device=device)
    log(f"test accuracy {results['test_acc']:.3f}, macro-F1 {results['test_macro_f1']:.3f} "
        f"on {results['test_images']} images; run in {out}")
