"""How well the demo-size classifier recognises real photographs: Stellarium's deep-sky photos.

Models of the demo's size and recipe (``flare demo``: ResNet-18, 96 px, 15 epochs, flips
and class-balanced draws, :func:`flare.demo.demo_training`) are trained and judged on the
same held-out real photos, a split grouped by object (several photos of one object never
straddle train and test):

* **mixed + all synthetic**: real photos for galaxy, nebula and star, the synthetic sky for
  all eight classes (``flare data mix --synthetic all``, the demo's set: single stars, which
  survey frames are full of, are only in the synthetic star class), over several training
  seeds, at the demo's input size and at 64 px;
* **mixed**: the same split with synthetic images only for the five classes Stellarium has
  no photos of (``flare data mix``);
* **synthetic only**: the demo's set without Stellarium, so the row says how far the
  procedural sky alone transfers to real photos.

The score is balanced accuracy over galaxy / nebula / star (the mean of their recalls, so
the most common class cannot carry it), with each class's recall and count. Messier objects
are never in the data (``flare data stellarium`` leaves them out). Usage::

    flare data stellarium --out /tmp/stellarium128
    python -m flare.benchmarks.real_sky --real /tmp/stellarium128 --work /tmp/real-sky
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

#: The fine classes Stellarium's photos cover: what the balanced accuracy averages over.
REAL_CLASSES = ("galaxy", "nebula", "star")
TARGET = 0.80


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True, help="Output of 'flare data stellarium'.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-real-sky"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--per-class", type=int, default=80, help="Synthetic images per class (the demo's).")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--input-size", type=int, default=96, help="The demo's; a row at 64 px is added.")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data and split.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Training seeds of the demo's set at each input size (the others get one).")
    parser.add_argument("--demo-only", action="store_true",
                        help="Only the demo's recipe: a check of it on another split (--seed 1).")
    args = parser.parse_args()

    from flare.benchmarks.common import write_results
    from flare.demo import demo_training
    from flare.runtime.core.artifact import to_plain
    from flare.training.classifiers.train import score_run, train
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.mix import mix
    from flare.training.data.splits import split_groups, write_split
    from flare.training.data.synth import SynthConfig, synthesize

    synthetic = args.work / "synthetic"
    synthesize(synthetic, SynthConfig(per_class=args.per_class, size=128, seed=args.seed))
    mixed, mixed_all = args.work / "mixed", args.work / "mixed_all"
    sources = mix(args.real, synthetic, mixed)
    mix(args.real, synthetic, mixed_all, synthetic_classes="all")
    samples, _ = scan_image_folder(mixed / "hr")
    rows = split_groups(samples, seed=args.seed)
    split = write_split(rows, args.work / "split_mixed.csv")
    known = {r["path"] for r in rows}
    extra = [{"path": s.path, "label": s.label, "group": s.path, "split": "train"}
             for s in scan_image_folder(mixed_all / "hr")[0] if s.path not in known]
    split_all = write_split(rows + extra, args.work / "split_mixed_all.csv")
    real_test = [r for r in rows if r["split"] == "test" and r["label"] in REAL_CLASSES]
    train_groups = {r["group"] for r in rows if r["split"] != "test"}
    assert not any(r["group"] in train_groups for r in real_test), "an object straddles train and test"

    def runs(name: str, data: Path, split_file: Path | None, seeds: list[int], size: int) -> dict[str, Any]:
        judged = []
        for seed in seeds:
            out = args.work / f"run_{name}_{size}px_seed{seed}"
            if not (out / "results.json").exists():
                train(demo_training(args.model, data, args.epochs, size, seed), out, split=split_file,
                      resume=(out / "train_state.pt").exists())
            judged.append(judge(score_run(out, mixed / "hr", real_test), out))
        return {"input_size": size, **summarise(judged, seeds)}

    many, size = [args.seed + k for k in range(args.seeds)], args.input_size
    results = {"real": str(args.real.resolve()), "sources": sources, "model": args.model, "epochs": args.epochs,
               "recipe": to_plain(demo_training(args.model, mixed_all / "hr", args.epochs, size, args.seed)),
               "seed": args.seed, "test_photos": len(real_test),
               "test_objects": len({r["group"] for r in real_test}), "target_balanced_accuracy": TARGET,
               "models": {"mixed + all synthetic (the demo's)": runs("mixed_all", mixed_all / "hr", split_all, many, size)}}
    if not args.demo_only:
        results["models"].update({
            "mixed + all synthetic, 64 px": runs("mixed_all", mixed_all / "hr", split_all, many, 64),
            "mixed": runs("mixed", mixed / "hr", split, [args.seed], size),
            "synthetic only": runs("synthetic", synthetic / "hr", None, [args.seed], size)})
    name = f"real_sky_{args.model}" + (f"_split{args.seed}" if args.seed else "")
    js, md = write_results(args.out, name, results, markdown(results))
    print(md.read_text())


def judge(scores: dict[str, Any], run: Path) -> dict[str, Any]:
    """Per real class: its recall and count, and what it was taken for; then the balanced accuracy."""
    from flare.runtime.core.runs import ClassifierRun

    classes = ClassifierRun.load(run).classes
    cm = scores["cm"]
    per_class = {}
    for name in REAL_CLASSES:
        row = cm[classes.index(name)]
        taken_for = {classes[j]: int(n) for j, n in enumerate(row) if n and j != classes.index(name)}
        per_class[name] = {"images": int(row.sum()), "recall": float(row[classes.index(name)] / max(row.sum(), 1)),
                           "taken_for": taken_for}
    balanced = float(np.mean([c["recall"] for c in per_class.values()]))
    return {"balanced_accuracy": balanced, "per_class": per_class, "target_met": balanced >= TARGET}


def summarise(judged: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Over training seeds: the balanced accuracy's mean and 95% interval, each class's recall over
    all seeds' predictions pooled, what the mistakes were, and each seed's own figures."""
    from flare.training.pipeline.intervals import estimate

    balanced = estimate([j["balanced_accuracy"] for j in judged])
    per_class = {}
    for name in REAL_CLASSES:
        images = sum(j["per_class"][name]["images"] for j in judged)
        right = sum(j["per_class"][name]["recall"] * j["per_class"][name]["images"] for j in judged)
        taken_for: dict[str, int] = {}
        for j in judged:
            for other, n in j["per_class"][name]["taken_for"].items():
                taken_for[other] = taken_for.get(other, 0) + n
        per_class[name] = {"images": images // len(judged), "recall": right / max(images, 1), "taken_for": taken_for}
    return {"seeds": seeds, "balanced_accuracy": balanced.mean, "balanced_interval": [balanced.low, balanced.high],
            "per_class": per_class, "target_met": balanced.mean >= TARGET, "per_seed": judged}


def markdown(results: dict[str, Any]) -> str:
    head = ("| training set | input | seeds | balanced accuracy | " + " | ".join(f"{c} recall (n)" for c in REAL_CLASSES)
            + " | target |")
    lines = [f"Demo-size {results['model']} ({results['epochs']} epochs, flips, class-balanced draws) on "
             f"{results['test_photos']} held-out real photos of {results['test_objects']} objects (split grouped by "
             "object, data seed " f"{results['seed']}; no Messier object anywhere). Balanced accuracy: mean over "
             "training seeds, ± half its 95% t interval; recalls pool the seeds' predictions; mistakes are summed "
             "over seeds.", "", head, "|" + "---|" * (len(REAL_CLASSES) + 5)]
    for name, r in results["models"].items():
        low, high = r["balanced_interval"]
        balanced = f"{r['balanced_accuracy']:.3f}" + ("" if low is None else f" ± {(high - low) / 2:.3f}")
        cells = [f"{r['per_class'][c]['recall']:.3f} ({r['per_class'][c]['images']})" for c in REAL_CLASSES]
        lines.append(f"| {name} | {r['input_size']} px | {len(r['seeds'])} | {balanced} | " + " | ".join(cells) +
                     f" | {'met' if r['target_met'] else 'missed'} (>= {TARGET}, mean) |")
    lines += ["", "Where the real test photos went wrong (true class: predicted class x count):", ""]
    for name, r in results["models"].items():
        wrong = "; ".join(f"{c}: " + ", ".join(f"{p} x{n}" for p, n in r["per_class"][c]["taken_for"].items())
                          for c in REAL_CLASSES if r["per_class"][c]["taken_for"])
        lines.append(f"- {name}: {wrong or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
