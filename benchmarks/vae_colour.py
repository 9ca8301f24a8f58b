"""How much colour the diffusion model's VAE keeps, on held-out real photos.

A latent diffusion model can only generate what its VAE reconstructs: if the VAE turns a red
emission nebula grey, every generated nebula is grey. This benchmark trains the VAE phase of
``train-diffusion`` (``--epochs 0``) on the training part of a grouped split, once per
combination of ``--vae-lrs`` (``--vae-lr``) and ``--warmups`` (``--vae-colour-warmup``), and
scores reconstructions of the split's test photos: their colour (the mean distance of lit
pixels from their grey level, 0-255; lit = grey level above 40, so the black sky does not
dilute it) against the photos' own, how well each photo's colour is followed (correlation
over photos), and the L1 reconstruction error. ``--run`` scores existing diffusion RUNs
instead (trained without the test split). Usage::

    python -m flare.benchmarks.vae_colour --data stellar --vae-lrs 1e-3,2e-4 --vae-epochs 100
    python -m flare.benchmarks.vae_colour --data stellar --vae-lrs 1e-3 --warmups 0,200 --vae-epochs 20
    python -m flare.benchmarks.vae_colour --data stellar --run diff_run --name long
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: Pixels whose grey level (0-255) is above this are "lit": the colour is measured on them.
LIT = 40.0


def colour(images: np.ndarray) -> np.ndarray:
    """Per image (N x 3 x H x W in [-1, 1]): mean distance of lit pixels from their grey level, 0-255."""
    u = (np.clip(images, -1, 1) + 1) * 127.5
    grey = u.mean(1, keepdims=True)
    dist = np.abs(u - grey).mean(1)
    lit = grey[:, 0] > LIT
    return np.array([d[m].mean() if m.any() else 0.0 for d, m in zip(dist, lit)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder of photos (or a folder with hr/ in it).")
    parser.add_argument("--classes", default="galaxy,nebula,star", help="Classes whose test photos are scored.")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--vae-lrs", default="1e-3,2e-4", help="--vae-lr values to train and compare.")
    parser.add_argument("--warmups", default="0", help="--vae-colour-warmup values to train and compare.")
    parser.add_argument("--vae-epochs", type=int, default=20)
    parser.add_argument("--run", type=Path, action="append", default=[], help="Score this diffusion RUN's VAE instead.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-vae-colour"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="", help="Suffix of the result files' names.")
    args = parser.parse_args()

    import torch

    from flare.benchmarks.common import grouped_split, write_results
    from flare.runtime.core.artifact import to_plain
    from flare.runtime.core.runs import DiffusionRun, DiffusionTraining
    from flare.runtime.io.images import load_rgb
    from flare.training.data.folders import link_tree
    from flare.training.diffusion.model import load_diffusion, to_model_input
    from flare.training.diffusion.train import train_diffusion
    from flare.training.pipeline.intervals import paired_difference

    root, rows = grouped_split(args.data, args.split_seed)
    classes = set(args.classes.split(","))
    test = [r["path"] for r in rows if r["split"] == "test" and r["label"] in classes]
    runs: dict[str, Path] = {str(run): run for run in args.run}
    if not runs:
        train = link_tree([(root / r["path"], r["path"]) for r in rows if r["split"] == "train"], args.work / "train")
        for lr in args.vae_lrs.split(","):
            for w in (int(v) for v in args.warmups.split(",")):
                run = args.work / f"lr_{lr}_warmup_{w}"
                train_diffusion(DiffusionTraining(data=str(train), epochs=0, vae_epochs=args.vae_epochs, vae_lr=float(lr),
                                                  vae_colour_warmup=w, sample_per_class=2),
                                run, resume=(run / "run.json").exists())
                runs[f"VAE, {args.vae_epochs} epochs, lr {lr}, colour warm-up {w}"] = run

    size = load_diffusion(next(iter(runs.values()))).image_size
    photos = torch.stack([to_model_input(load_rgb(root / p), size) for p in test])
    photo_colour = colour(photos.numpy())
    table = ["| VAE | colour of lit pixels (photos: {:.1f}) | colour kept | follows each photo's colour | L1 |"
             .format(photo_colour.mean()), "|---|---|---|---|---|"]
    results: dict[str, object] = {"split_seed": args.split_seed, "test_photos": len(test),
                                  "photo_colour": float(photo_colour.mean()), "vaes": {}}
    for name, run in runs.items():
        vae = load_diffusion(run).vae.eval()
        with torch.inference_mode():
            recon = torch.cat([vae.decode(vae.encode(photos[i:i + 32]).latent_dist.mean).sample
                               for i in range(0, len(photos), 32)]).numpy()
        kept = colour(recon)
        follows = float(np.corrcoef(kept, photo_colour)[0, 1])
        l1 = np.abs(np.clip(recon, -1, 1) - photos.numpy()).mean((1, 2, 3))
        results["vaes"][name] = {"run": str(run), "train": to_plain(DiffusionRun.load(run).train),
                                 "colour": float(kept.mean()), "colour_kept": float(kept.mean() / photo_colour.mean()),
                                 "colour_correlation": follows,
                                 "l1": float(l1.mean()), "per_photo": {"path": test, "colour": kept.tolist(),
                                                                        "l1": l1.tolist()}}
        table.append(f"| {name} | {kept.mean():.1f} | {kept.mean() / photo_colour.mean():.0%} | r = {follows:.2f} | {l1.mean():.4f} |")
    vaes = list(results["vaes"].values())
    if len(vaes) == 2:
        d = paired_difference(vaes[1]["per_photo"]["colour"], vaes[0]["per_photo"]["colour"])
        e = paired_difference(vaes[1]["per_photo"]["l1"], vaes[0]["per_photo"]["l1"])
        results["colour_difference"], results["l1_difference"] = d.to_dict(), e.to_dict()
        table.append(f"\nSecond minus first, photo by photo: colour {d.mean:+.1f} "
                     f"(95% interval {d.low:+.1f} to {d.high:+.1f}), L1 {e.mean:+.4f} ({e.low:+.4f} to {e.high:+.4f}).")
    table.append(f"\n{len(test)} held-out photos ({args.classes}) of {args.data}, grouped split seed {args.split_seed}, "
                 f"at {size} px; reconstructions from the posterior mean.")
    js, md = write_results(args.out, f"vae_colour{'_' + args.name if args.name else ''}", results, "\n".join(table))
    print(md.read_text())


if __name__ == "__main__":
    main()
