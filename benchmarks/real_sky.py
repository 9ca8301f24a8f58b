"""How well the demo-size classifier recognises real photographs: Stellarium's deep-sky photos.

Models of the demo's size and recipe (``flare demo``: ResNet-18, 96 px, 30 epochs, flips
and class-balanced draws, :func:`flare.demo.demo_training`) are trained and judged on
held-out real photos, in splits grouped by object (several photos of one object never
straddle train and test). Each data seed in ``--splits`` draws its own split (its own
synthetic sky too) and trains ``--seeds`` models on it; with 13 to 27 test photos per class
one split decides little, so the headline is the mean over splits with its interval over
their means. The rows:

* **mixed + all synthetic**: real photos for galaxy, nebula and star, the synthetic sky for
  all eight classes (``flare data mix --synthetic all``, the demo's set: single stars, which
  survey frames are full of, are only in the synthetic star class), on every split;
* with ``--compare``, on the first split only: the same at 64 px, **mixed** (synthetic
  images only for the five classes Stellarium has no photos of, ``flare data mix``) and
  **synthetic only** (the demo's set without Stellarium: how far the procedural sky alone
  transfers to real photos).

The score is balanced accuracy over galaxy / nebula / star (the mean of their recalls, so
the most common class cannot carry it), with each class's recall and count. Messier objects
are never in the data (``flare data stellarium`` leaves them out). Usage::

    flare data stellarium --out /tmp/stellarium128
    python -m flare.benchmarks.real_sky --real /tmp/stellarium128 --work /tmp/real-sky --splits 1,2,3,4

(the committed ``results/real_sky_resnet18.md``; the ``results/real_sky_resnet18_15epochs*.md``
tables came from this script's earlier one-split form, before the demo trained 30 epochs).
``--look photo --splits 3,4`` made ``results/real_sky_resnet18_photo.md``: the same sets with the
synthetic sky in its photo look, which scored lower, so the demo keeps the classic look with real photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

#: The fine classes Stellarium's photos cover: what the balanced accuracy averages over.
REAL_CLASSES = ("galaxy", "nebula", "star")
TARGET = 0.80
DEMO_SET = "mixed + all synthetic (the demo's)"


def main() -> None:
    from flare.demo import DEMO_EPOCHS, LOOK_WITH_REAL_PHOTOS
    from flare.training.data.synth import LOOKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True, help="Output of 'flare data stellarium'.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-real-sky"),
                        help="Working folder; finished runs in it are reused.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--per-class", type=int, default=80, help="Synthetic images per class (the demo's).")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    parser.add_argument("--input-size", type=int, default=96, help="The demo's; --compare adds a row at 64 px.")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--splits", type=lambda v: [int(x) for x in v.split(",")], default=[0],
                        help="Data seeds, comma-separated: each draws its own grouped split.")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Training seeds of the demo's set on each split (the --compare rows get one).")
    parser.add_argument("--look", choices=LOOKS, default=LOOK_WITH_REAL_PHOTOS,
                        help="The synthetic sky's look ('flare data synth --look'; the demo's by default); runs of "
                             "each look are kept apart, and results of the classic look keep their old names.")
    parser.add_argument("--compare", action="store_true",
                        help="On the first split, also the 64 px, real-photos-only and synthetic-only rows.")
    args = parser.parse_args()

    from flare.benchmarks.common import write_results
    from flare.demo import demo_training
    from flare.runtime.core.artifact import to_plain

    splits = {}
    for k, data_seed in enumerate(args.splits):
        splits[str(data_seed)] = judge_split(args, data_seed, compare=args.compare and k == 0)
    first_set = args.work / f"split{args.splits[0]}" / f"mixed_all{_suffix(args.look)}" / "hr"
    results = {"real": str(args.real.resolve()), "model": args.model, "epochs": args.epochs, "look": args.look,
               "recipe": to_plain(demo_training(args.model, first_set, args.epochs, args.input_size)),
               "target_balanced_accuracy": TARGET, "splits": splits,
               "over_splits": over_splits([s["models"][DEMO_SET] for s in splits.values()])}
    name = f"real_sky_{args.model}{_suffix(args.look)}"
    _, md = write_results(args.out, name, results, markdown(results))
    print(md.read_text())


def _suffix(look: str) -> str:
    """What a look adds to folder and result names: nothing for classic, which keeps the names it was
    measured with."""
    return "" if look == "classic" else f"_{look}"


def judge_split(args: argparse.Namespace, data_seed: int, compare: bool) -> dict[str, Any]:
    """One grouped split drawn with ``data_seed``: its data, its runs (reused when finished), their scores."""
    from flare.demo import demo_training
    from flare.training.classifiers.train import score_run, train
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.mix import mix
    from flare.training.data.splits import split_groups, write_split
    from flare.training.data.synth import SynthConfig, synthesize

    work = args.work / f"split{data_seed}"
    look = _suffix(args.look)
    synthetic = work / f"synthetic{look}"
    synthesize(synthetic, SynthConfig(per_class=args.per_class, size=128, seed=data_seed, look=args.look))
    mixed, mixed_all = work / f"mixed{look}", work / f"mixed_all{look}"
    sources = mix(args.real, synthetic, mixed)
    mix(args.real, synthetic, mixed_all, synthetic_classes="all")
    samples, _ = scan_image_folder(mixed / "hr")
    rows = split_groups(samples, seed=data_seed)
    split = write_split(rows, work / f"split_mixed{look}.csv")
    known = {r["path"] for r in rows}
    extra = [{"path": s.path, "label": s.label, "group": s.path, "split": "train"}
             for s in scan_image_folder(mixed_all / "hr")[0] if s.path not in known]
    split_all = write_split(rows + extra, work / f"split_mixed_all{look}.csv")
    real_test = [r for r in rows if r["split"] == "test" and r["label"] in REAL_CLASSES]
    train_groups = {r["group"] for r in rows if r["split"] != "test"}
    assert not any(r["group"] in train_groups for r in real_test), "an object straddles train and test"

    def runs(name: str, data: Path, split_file: Path | None, seeds: list[int], size: int) -> dict[str, Any]:
        judged = []
        for seed in seeds:
            out = work / f"run_{name}{look}_{size}px_seed{seed}"
            if not (out / "results.json").exists():
                train(demo_training(args.model, data, args.epochs, size, seed), out, split=split_file,
                      resume=(out / "train_state.pt").exists())
            judged.append(judge(score_run(out, mixed / "hr", real_test), out))
        return {"input_size": size, **summarise(judged, seeds)}

    many, size = [data_seed + k for k in range(args.seeds)], args.input_size
    models = {DEMO_SET: runs("mixed_all", mixed_all / "hr", split_all, many, size)}
    if compare:
        models.update({
            "mixed + all synthetic, 64 px": runs("mixed_all", mixed_all / "hr", split_all, many, 64),
            "mixed": runs("mixed", mixed / "hr", split, [data_seed], size),
            "synthetic only": runs("synthetic", synthetic / "hr", None, [data_seed], size)})
    return {"sources": sources, "test_photos": len(real_test), "test_objects": len({r["group"] for r in real_test}),
            "models": models}


def judge(scores: dict[str, Any], run: Path) -> dict[str, Any]:
    """Per real class: its recall and count, and what it was taken for; then the balanced accuracy."""
    from flare.benchmarks.common import class_recalls
    from flare.runtime.core.runs import ClassifierRun

    classes = ClassifierRun.load(run).classes
    found = class_recalls(scores["cm"], classes)
    per_class = {name: found.get(name, {"images": 0, "recall": 0.0, "taken_for": {}}) for name in REAL_CLASSES}
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


def over_splits(demo_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's recipe over splits: the mean of the splits' mean balanced accuracies with its 95%
    interval over them (the split is the larger source of spread), and each class's recall pooled
    over every split's and seed's predictions."""
    from flare.training.pipeline.intervals import estimate

    balanced = estimate([r["balanced_accuracy"] for r in demo_rows])
    per_class = {}
    for name in REAL_CLASSES:
        images = sum(r["per_class"][name]["images"] * len(r["seeds"]) for r in demo_rows)
        right = sum(r["per_class"][name]["recall"] * r["per_class"][name]["images"] * len(r["seeds"])
                    for r in demo_rows)
        per_class[name] = {"recall": right / max(images, 1), "predictions": images}
    return {"splits": len(demo_rows), "runs": sum(len(r["seeds"]) for r in demo_rows),
            "balanced_accuracy": balanced.mean, "balanced_interval": [balanced.low, balanced.high],
            "per_class": per_class, "target_met": balanced.mean >= TARGET}


def _balanced(r: dict[str, Any]) -> str:
    low, high = r["balanced_interval"]
    return f"{r['balanced_accuracy']:.3f}" + ("" if low is None else f" ± {(high - low) / 2:.3f}")


def _target(r: dict[str, Any]) -> str:
    return f"{'met' if r['target_met'] else 'missed'} (>= {TARGET}, mean)"


def markdown(results: dict[str, Any]) -> str:
    splits = results["splits"]
    head = ("| split | training set | input | seeds | balanced accuracy | "
            + " | ".join(f"{c} recall (n)" for c in REAL_CLASSES) + " | target |")
    lines = [f"Demo-size {results['model']} ({results['epochs']} epochs, flips, class-balanced draws, the "
             f"synthetic sky in its {results.get('look', 'classic')} look) on held-out "
             "real photos, in splits grouped by object (each data seed draws its own; no Messier object anywhere). "
             "Balanced accuracy over galaxy / nebula / star: per split the mean over training seeds ± half its 95% t "
             "interval; recalls pool the seeds' predictions; mistakes are summed over seeds.", "", head,
             "|" + "---|" * (len(REAL_CLASSES) + 6)]
    for data_seed, split in splits.items():
        for name, r in split["models"].items():
            cells = [f"{r['per_class'][c]['recall']:.3f} ({r['per_class'][c]['images']})" for c in REAL_CLASSES]
            lines.append(f"| {data_seed} ({split['test_photos']} photos) | {name} | {r['input_size']} px | "
                         f"{len(r['seeds'])} | {_balanced(r)} | " + " | ".join(cells) + f" | {_target(r)} |")
    every = results["over_splits"]
    if every["splits"] > 1:
        cells = [f"{every['per_class'][c]['recall']:.3f}" for c in REAL_CLASSES]
        lines += ["", f"Over the {every['splits']} splits ({every['runs']} models): balanced accuracy "
                  f"**{_balanced(every)}** (mean of the splits' means ± half its 95% t interval over splits); "
                  "recall " + ", ".join(f"{c} {v}" for c, v in zip(REAL_CLASSES, cells)) + f": target {_target(every)}."]
    lines += ["", "Where the real test photos went wrong (true class: predicted class x count):", ""]
    for data_seed, split in splits.items():
        for name, r in split["models"].items():
            wrong = "; ".join(f"{c}: " + ", ".join(f"{p} x{n}" for p, n in r["per_class"][c]["taken_for"].items())
                              for c in REAL_CLASSES if r["per_class"][c]["taken_for"])
            lines.append(f"- split {data_seed}, {name}: {wrong or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
