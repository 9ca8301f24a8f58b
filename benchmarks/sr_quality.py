"""PSNR / SSIM of bicubic upscaling vs our trained SwinIR on held-out pairs.

The data (by default the demo's, ``flare data synth`` with its settings; ``--data`` names any
folder with ``hr/`` and ``lr/`` twins, such as ``flare data stellarium``'s real photos or a
``flare data mix``) is split by group (by object for real photos), SwinIR is trained with
``train-sr`` on the training HR images and their own LR twins, and both methods are scored on
the test split's LR/HR pairs (Y channel, border = scale, as SR papers report). With
``--data`` the split is ``flare experiment``'s own (same function and seed) and SR trains on
its train part only, so the run can be given to that experiment as ``--sr`` without a leak
(``--split-seed`` draws another split, to confirm a result on objects nobody looked at);
``--classes`` limits the scored pairs (e.g. to the real photos of a mix). Usage::

    python -m flare.benchmarks.sr_quality --work /tmp/srbench --out benchmarks/results
    python -m flare.benchmarks.sr_quality --data mixed --classes galaxy,nebula,star --arch small_x4 --name real
    python -m flare.benchmarks.sr_quality --data mixed --classes galaxy,nebula,star --split-seed 2 --fresh-degradation --loss mse --lr 1e-3 --epochs 80 --steps-per-epoch 400 --name real_fresh_split2_mse
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flare.runtime.core.runs import SR_LOSSES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-sr-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--arch", default="tiny_x4")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--data", type=Path, default=None, help="Folder with hr/ and lr/ twins (default: synthesize).")
    parser.add_argument("--classes", default=None, help="Comma-separated classes whose test pairs are scored.")
    parser.add_argument("--name", default="", help="Suffix of the result files' names.")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="Seed of the grouped split (0 is flare experiment's default; another draws other test objects).")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate of train-sr.")
    parser.add_argument("--loss", choices=SR_LOSSES, default="l1", help="train-sr's pixel loss.")
    parser.add_argument("--fresh-degradation", action="store_true",
                        help="Train on the training HR images degraded anew at every draw (the definition that made "
                             "the data's LR twins) instead of on their fixed LR twins.")
    parser.add_argument("--sr-run", type=Path, default=None,
                        help="Score an existing train-sr RUN (trained without the test split) instead of training one.")
    args = parser.parse_args()

    import torch

    from flare.benchmarks.common import write_results
    from flare.runtime.io.images import load_rgb
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.splits import split_groups
    from flare.training.pipeline.intervals import paired_difference
    from flare.training.data.folders import link_tree
    from flare.training.sr.metrics import bicubic_upscale, psnr, ssim
    from flare.training.data.synth import SynthConfig, synthesize
    from flare.runtime.core.artifact import to_plain
    from flare.runtime.core.runs import SRRun, SRTraining
    from flare.training.sr.train import load_sr, to_image, to_tensor, train_sr

    if args.data is None:
        data = args.work / "data"
        synthesize(data, SynthConfig(per_class=args.per_class, size=128, seed=0))
    else:
        data = args.data
    samples, _ = scan_image_folder(data / ("lr" if args.data is not None else "hr"))
    rows = split_groups(samples, seed=args.split_seed)
    train_rows = [r for r in rows if r["split"] != "test" and (args.data is None or r["split"] == "train")]
    classes = set(args.classes.split(",")) if args.classes else None
    test_rows = [r for r in rows if r["split"] == "test" and (classes is None or r["label"] in classes)]
    hr_train = link_tree([(data / "hr" / r["path"], r["path"]) for r in train_rows], args.work / "hr_train")
    lr_train = link_tree([(data / "lr" / r["path"], r["path"]) for r in train_rows], args.work / "lr_train")
    run = args.sr_run or args.work / "sr_run"
    if args.sr_run is None:  # trains, or finishes an interrupted run in --work
        train_sr(SRTraining(data=str(hr_train), low_res_dir=None if args.fresh_degradation else str(lr_train),
                            arch=args.arch, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch=16,
                            patch=64, lr=args.lr, loss=args.loss), run, resume=(run / "train_state.pt").exists())
    model, config, _ = load_sr(run)
    trained = SRRun.load(run).train
    train_seconds = sum(json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines())
    scores = {k: [] for k in ("bicubic_psnr", "bicubic_ssim", "sr_psnr", "sr_ssim")}
    with torch.inference_mode():
        for r in test_rows:
            lr, hr = load_rgb(data / "lr" / r["path"]), load_rgb(data / "hr" / r["path"])
            sr = to_image(model(to_tensor(lr)))
            bic = bicubic_upscale(lr, config.scale)
            scores["bicubic_psnr"].append(psnr(bic, hr, config.scale))
            scores["bicubic_ssim"].append(ssim(bic, hr, config.scale))
            scores["sr_psnr"].append(psnr(sr, hr, config.scale))
            scores["sr_ssim"].append(ssim(sr, hr, config.scale))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    gain = paired_difference(scores["sr_psnr"], scores["bicubic_psnr"])  # photo by photo
    results = {"run": str(run), "train": to_plain(trained), "split_seed": args.split_seed,
               "test_pairs": len(test_rows), "train_seconds": round(train_seconds, 1), **mean,
               "psnr_gain": gain.to_dict(), "per_image": {"path": [r["path"] for r in test_rows], **scores}}
    pairs = "fixed LR twins" if trained.low_res_dir else "LR degraded anew at every draw"
    table = (f"| method | PSNR (dB, Y) | SSIM (Y) |\n|---|---|---|\n"
             f"| bicubic x4 | {mean['bicubic_psnr']:.2f} | {mean['bicubic_ssim']:.4f} |\n"
             f"| SwinIR {trained.arch}, train-sr {trained.epochs} x {trained.steps_per_epoch} steps | "
             f"{mean['sr_psnr']:.2f} | {mean['sr_ssim']:.4f} |\n\n"
             f"Gain over bicubic, photo by photo: {gain.mean:+.2f} dB"
             f"{'' if gain.low is None else f' (95% interval {gain.low:+.2f} to {gain.high:+.2f})'}.\n\n"
             f"{len(test_rows)} held-out 32->128 px pairs of "
             f"{'the demo data' if args.data is None else str(args.data)}"
             f"{' (classes ' + args.classes + ')' if args.classes else ''}, grouped split seed {args.split_seed}; "
             f"SR trained on the split's training images ({pairs}, {trained.loss.upper()} loss, batch {trained.batch}, "
             f"patch {trained.patch}, Adam {trained.lr:g}, cosine) in {train_seconds:.0f} s on a CPU.")
    js, md = write_results(args.out, f"sr_quality_{trained.arch}{'_' + args.name if args.name else ''}", results, table)
    print(md.read_text())


if __name__ == "__main__":
    main()
