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


@click.command()
@click.argument("data_dir", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Experiment folder (re-running resumes).")
@click.option("--model", "models", multiple=True, default=("resnet18",), show_default=True,
              help="Backbone(s); the paper's: --model resnet50 --model googlenet --model densenet121 "
                   "--model vit_base_patch16_224.")
@click.option("--epochs", default=15, show_default=True)
@click.option("--batch", default=32, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--img-size", default=64, show_default=True, help="Classifier input side.")
@click.option("--flare-size", default=128, show_default=True, help="Stage-1 output side (the paper: 512).")
@click.option("--sr", type=click.Path(path_type=Path), default=None,
              help="SwinIR checkpoint or train-sr RUN (default: train one on DATA/hr and DATA/lr).")
@click.option("--diffusion", default=None, help="train-diffusion RUN or local pipeline folder (default: train one).")
@click.option("--diffusion-epochs", default=40, show_default=True)
@click.option("--per-image", default=4, show_default=True, help="Stage-2 samples per original.")
@click.option("--gen-steps", default=20, show_default=True, help="Sampler steps in stage 2 (the paper: 50).")
@click.option("--guidance", default=4.0, show_default=True, help="Classifier-free guidance (the paper: 8).")
@click.option("--alpha", default=0.5, show_default=True)
@click.option("--beta", default=1.0, show_default=True)
@click.option("--select", type=click.Choice(["random", "percentile"]), default="percentile", show_default=True)
@click.option("--ood", multiple=True, type=click.Path(path_type=Path), help="Out-of-domain ImageFolder(s) to score on.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def experiment(data_dir: Path, out: Path, models: tuple[str, ...], epochs: int, batch: int, lr: float, img_size: int,
               flare_size: int, sr: Path | None, diffusion: str | None, diffusion_epochs: int, per_image: int,
               gen_steps: int, guidance: float, alpha: float, beta: float, select: str, ood: tuple[Path, ...],
               seed: int, device: str) -> None:
    """Raw_LR vs Raw_Aug_LR vs FLARE on one leak-free split: a Markdown table and JSON."""
    from training.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(models=models, epochs=epochs, batch=batch, lr=lr, img_size=img_size, seed=seed,
                           flare_size=flare_size, sr=str(sr) if sr else None, diffusion=diffusion,
                           diffusion_epochs=diffusion_epochs, per_image=per_image, gen_steps=gen_steps,
                           guidance=guidance, alpha=alpha, beta=beta, select=select, ood=tuple(map(str, ood)))
    run_experiment(data_dir, out, cfg, device=device)
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"results: {Path(out) / 'results.md'} and {Path(out) / 'results.json'}")
