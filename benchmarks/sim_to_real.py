"""How far the synthetic sky alone carries a classifier to real photographs, look by look.

A model of the demo's size and recipe (``flare demo``: ResNet-18, 96 px, 30 epochs, flips,
class-balanced draws) is trained on ``flare data synth`` images only, once per ``--look`` and
training seed, and judged on Stellarium's real deep-sky photos. No real photo is used in
training, so every photo of ``flare data stellarium``'s output is held out (and no Messier
object is among them: the command leaves them out). Seed ``k`` draws the same synthetic
seed and the same initialisation for every look, so the looks are compared seed by seed.

Two scores, both balanced over galaxy / nebula / star (the classes Stellarium has photos of):

* **8-way**: the model's own answer among all eight classes, as triage would give it (a real
  galaxy called "black hole" is wrong);
* **3-way**: its best guess among galaxy, nebula and star only (does it tell the three real
  classes apart, whatever it makes of the other five).

Usage (``results/sim_to_real_resnet18.md``)::

    flare data stellarium --out /tmp/stellarium128
    python -m flare.benchmarks.sim_to_real --real /tmp/stellarium128 --work /tmp/sim-to-real --seeds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from flare.benchmarks.real_sky import REAL_CLASSES
from flare.training.data.synth import LOOKS


def main() -> None:
    from flare.benchmarks.common import write_results
    from flare.demo import DEMO_EPOCHS, demo_training
    from flare.runtime.core.artifact import to_plain
    from flare.training.classifiers.train import train
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.synth import SynthConfig, synthesize

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True, help="Output of 'flare data stellarium'.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-sim-to-real"),
                        help="Working folder; finished runs in it are reused.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--per-class", type=int, default=80, help="Synthetic images per class (the demo's).")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--looks", type=lambda v: v.split(","), default=list(LOOKS),
                        help="Train only these looks' runs (comma-separated; to share the work between processes); "
                             "the table needs both.")
    args = parser.parse_args()

    samples, _ = scan_image_folder(args.real / "hr")
    photos = [{"path": s.path, "label": s.label} for s in samples if s.label in REAL_CLASSES]
    looks: dict[str, Any] = {}
    for look in args.looks:
        judged = []
        for seed in range(args.seeds):
            data = args.work / f"synth_{look}_seed{seed}"
            synthesize(data, SynthConfig(per_class=args.per_class, size=128, seed=seed, look=look))
            run = args.work / f"run_{look}_seed{seed}"
            if not (run / "results.json").exists():
                train(demo_training(args.model, data / "hr", args.epochs, args.input_size, seed), run,
                      resume=(run / "train_state.pt").exists())
            judged.append(judge(run, args.real / "hr", photos))
            print(f"{look} seed {seed}: 8-way {judged[-1]['balanced_8way']:.3f}, "
                  f"3-way {judged[-1]['balanced_3way']:.3f}", flush=True)
        looks[look] = summarise(judged)
    if set(looks) != set(LOOKS):
        return
    results = {"real": str(args.real.resolve()), "photos": {c: sum(p["label"] == c for p in photos)
                                                            for c in REAL_CLASSES},
               "model": args.model, "epochs": args.epochs, "input_size": args.input_size, "seeds": args.seeds,
               "recipe": to_plain(demo_training(args.model, args.work / "synth", args.epochs, args.input_size)),
               "looks": looks, "photo_minus_classic": differences(looks)}
    _, md = write_results(args.out, f"sim_to_real_{args.model}", results, markdown(results))
    print(md.read_text())


def judge(run: Path, root: Path, photos: list[dict[str, str]]) -> dict[str, Any]:
    """Per real class: the 8-way and the 3-way recall and what the photos were taken for."""
    import torch
    from torch.utils.data import DataLoader

    from flare.training.classifiers.train import ImageDataset, build_from_run

    model, config, _ = build_from_run(run)
    classes = config.classes
    ds = ImageDataset(photos, root, config.preprocessing, {c: classes.index(c) for c in REAL_CLASSES}, cache=False)
    with torch.inference_mode():
        logits = np.concatenate([model(x).float().numpy() for x, _ in DataLoader(ds, batch_size=64)])
    truth = np.array([classes.index(p["label"]) for p in photos])
    real = [classes.index(c) for c in REAL_CLASSES]
    eight = logits.argmax(1)
    three = np.array(real)[logits[:, real].argmax(1)]
    per_class = {}
    for c in REAL_CLASSES:
        mine = truth == classes.index(c)
        taken = {classes[j]: int(n) for j, n in enumerate(np.bincount(eight[mine], minlength=len(classes)))
                 if n and classes[j] != c}
        per_class[c] = {"images": int(mine.sum()), "recall_8way": float((eight[mine] == truth[mine]).mean()),
                        "recall_3way": float((three[mine] == truth[mine]).mean()), "taken_for": taken}
    return {"balanced_8way": float(np.mean([v["recall_8way"] for v in per_class.values()])),
            "balanced_3way": float(np.mean([v["recall_3way"] for v in per_class.values()])),
            "per_class": per_class}


def summarise(judged: list[dict[str, Any]]) -> dict[str, Any]:
    """One look over its seeds: each score's mean and 95% interval, recalls averaged over seeds."""
    from flare.training.pipeline.intervals import estimate

    out: dict[str, Any] = {"per_seed": judged}
    for score in ("balanced_8way", "balanced_3way"):
        e = estimate([j[score] for j in judged])
        out[score] = {"mean": e.mean, "interval": [e.low, e.high]}
    out["per_class"] = {c: {k: float(np.mean([j["per_class"][c][k] for j in judged]))
                            for k in ("recall_8way", "recall_3way")} for c in REAL_CLASSES}
    return out


def differences(looks: dict[str, Any]) -> dict[str, Any]:
    """photo - classic, paired by seed, for each score, with its interval."""
    from flare.training.pipeline.intervals import paired_difference

    out = {}
    for score in ("balanced_8way", "balanced_3way"):
        d = paired_difference([j[score] for j in looks["photo"]["per_seed"]],
                              [j[score] for j in looks["classic"]["per_seed"]])
        out[score] = {"mean": d.mean, "interval": [d.low, d.high],
                      "significant": d.low is not None and (d.low > 0 or d.high < 0)}
    return out


def _cell(e: dict[str, Any]) -> str:
    low, high = e["interval"]
    return f"{e['mean']:.3f}" + ("" if low is None else f" ({low:.3f} to {high:.3f})")


def markdown(results: dict[str, Any]) -> str:
    counts = ", ".join(f"{c} {n}" for c, n in results["photos"].items())
    lines = [f"Demo-size {results['model']} ({results['epochs']} epochs, {results['input_size']} px, flips, "
             f"class-balanced draws) trained on the synthetic sky only ({results['seeds']} seeds per look), judged "
             f"on every real Stellarium photo ({counts}; none used in training, no Messier object). Balanced "
             "accuracy over galaxy / nebula / star, mean over seeds (95% t interval); 8-way: the model's answer "
             "among all eight classes; 3-way: its best guess among the three real classes.", "",
             "| look | balanced acc, 8-way | balanced acc, 3-way | "
             + " | ".join(f"{c} recall 8-way / 3-way" for c in REAL_CLASSES) + " |",
             "|" + "---|" * (3 + len(REAL_CLASSES))]
    for look, r in results["looks"].items():
        cells = [f"{r['per_class'][c]['recall_8way']:.3f} / {r['per_class'][c]['recall_3way']:.3f}"
                 for c in REAL_CLASSES]
        lines.append(f"| {look} | {_cell(r['balanced_8way'])} | {_cell(r['balanced_3way'])} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    for score, d in results["photo_minus_classic"].items():
        verdict = "significant" if d["significant"] else "not significant"
        lines.append(f"- photo - classic, {score.split('_')[1]}, paired by seed: {_cell(d)}: {verdict}.")
    lines += ["", "What the real photos were taken for (8-way, summed over seeds):", ""]
    for look, r in results["looks"].items():
        for c in REAL_CLASSES:
            taken: dict[str, int] = {}
            for j in r["per_seed"]:
                for other, n in j["per_class"][c]["taken_for"].items():
                    taken[other] = taken.get(other, 0) + n
            ranked = sorted(taken.items(), key=lambda kv: -kv[1])
            lines.append(f"- {look}, {c}: " + (", ".join(f"{o} x{n}" for o, n in ranked) or "none"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
