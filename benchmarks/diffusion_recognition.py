"""Are the diffusion model's samples recognisable as their class? A classifier of real photos judges.

"A person can recognise the class" in a sample grid is one person's opinion. This benchmark
asks a classifier instead: one of the demo's recipe (:func:`flare.demo.demo_training`),
trained on the same grouped split's training images that the diffusion RUN learned from,
classifies ``--per-class`` samples of every class the RUN knows. Each class's recall over its
samples says how often the samples look like that class to a model that learned the class
from the real photos; the same classifier on the split's held-out real photos says how far
such a recall can be trusted. Chance is one over the number of classes. A copied training
image would be recognised as easily, so each sample's distance to its nearest training image
is set beside the held-out images' own (:func:`nearest_distances`).

The RUN must have been trained on the training part of ``--split-seed``'s grouped split of
``--data`` (and nothing from its test part): the samples then come from training images only,
and the held-out photos are new to both models. Usage::

    flare data split mixed/hr --out split0.csv --seed 0     # train the RUN on split0's train part
    python -m flare.benchmarks.diffusion_recognition --data mixed --split-seed 0 --run diff_run

``--images FOLDER`` judges images the RUN already made instead of new samples: an
experiment's ``flare/stage2/`` (variations of the training originals, what FLARE's arm trained on).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def nearest_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Per query image, the RMS pixel difference (0-255) to its nearest reference image, over the
    query's 8 flips and quarter turns (the diffusion model trained on all of them).

    Both are N x S x S x 3 arrays of one size. A sample much nearer to a training image than
    held-out images ever are is a copy, which a classifier would recognise as easily as the real
    thing.
    """
    q = queries.astype(np.float64)
    turns = [np.rot90(q, k, axes=(1, 2)) for k in range(4)]
    variants = np.stack(turns + [t[:, :, ::-1] for t in turns], 1).reshape(len(q) * 8, -1)
    r = references.astype(np.float64).reshape(len(references), -1)
    d2 = (variants ** 2).sum(1)[:, None] + (r ** 2).sum(1)[None, :] - 2 * variants @ r.T
    nearest = np.maximum(d2, 0).min(1).reshape(len(q), 8).min(1)
    return np.sqrt(nearest / r.shape[1])


def sample(pipe: Any, classes: list[str], per_class: int, steps: int, guidance: float,
           out: Path) -> list[dict[str, str]]:
    """``per_class`` samples of each class written to ``out/<class>/seed<S>.png``; their split rows.

    Seeds are fixed per class (1000 x the class's index + k), so a rerun judges the same samples.
    """
    from PIL import Image

    from flare.runtime.foundation.progress import log

    rows = []
    for c, name in enumerate(classes):
        seeds = [1000 * c + k for k in range(per_class)]
        images = pipe.generate([name] * per_class, seeds, steps=steps, guidance=guidance)
        (out / name).mkdir(parents=True, exist_ok=True)
        for seed, image in zip(seeds, images, strict=True):
            Image.fromarray(image).save(out / name / f"seed{seed}.png")
            rows.append({"path": f"{name}/seed{seed}.png", "label": name})
        log(f"generated {per_class} {name} samples")
    return rows


def main() -> None:
    from flare.demo import DEMO_EPOCHS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder (or a folder with hr/ in it).")
    parser.add_argument("--split-seed", type=int, default=0, help="The grouped split the RUN was trained on.")
    parser.add_argument("--run", type=Path, required=True, help="The train-diffusion RUN whose samples are judged.")
    parser.add_argument("--per-class", type=int, default=16, help="Samples per class.")
    parser.add_argument("--images", type=Path, default=None,
                        help="An ImageFolder of the RUN's images to judge instead of sampling "
                             "(e.g. EXPERIMENT/flare/stage2).")
    parser.add_argument("--steps", type=int, default=25, help="Sampler steps.")
    parser.add_argument("--guidance", type=float, default=4.0, help="Classifier-free guidance scale.")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="The judging classifier's epochs.")
    parser.add_argument("--input-size", type=int, default=96, help="The judging classifier's input size.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flare-diffusion-recognition"),
                        help="Working folder; a finished classifier in it is reused.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="", help="Suffix of the result files' names.")
    args = parser.parse_args()

    from PIL import Image

    from flare.benchmarks.common import class_recalls, grouped_split, write_results
    from flare.demo import demo_training
    from flare.runtime.core.artifact import to_plain
    from flare.runtime.core.runs import ClassifierRun, DiffusionRun
    from flare.runtime.io.images import load_rgb
    from flare.training.classifiers.train import score_run, train
    from flare.training.data.folders import scan_image_folder
    from flare.training.data.splits import write_split
    from flare.training.diffusion.model import load_diffusion, to_model_input, to_uint8

    root, rows = grouped_split(args.data, args.split_seed)
    split = write_split(rows, args.work / f"split{args.split_seed}.csv")
    judge = args.work / f"classifier_split{args.split_seed}"
    if not (judge / "results.json").exists():
        train(demo_training("resnet18", root, args.epochs, args.input_size, args.split_seed), judge, split=split,
              resume=(judge / "train_state.pt").exists())
    classes = ClassifierRun.load(judge).classes

    pipe = load_diffusion(args.run)
    if args.images is not None:
        made = args.images
        sample_rows = [{"path": s.path, "label": s.label} for s in scan_image_folder(made)[0]]
    else:
        made = args.work / f"samples_{args.run.name}"
        sample_rows = sample(pipe, pipe.known_classes or classes, args.per_class, args.steps, args.guidance, made)

    real_test = [r for r in rows if r["split"] == "test"]
    size = pipe.image_size

    def pixels(folder: Path, paths: list[str]) -> np.ndarray:
        return np.stack([to_uint8(to_model_input(load_rgb(folder / p), size)[None])[0] for p in paths])

    train_pixels = pixels(root, [r["path"] for r in rows if r["split"] == "train"])
    to_train = {"samples": nearest_distances(pixels(made, [r["path"] for r in sample_rows]), train_pixels),
                "held_out_images": nearest_distances(pixels(root, [r["path"] for r in real_test]), train_pixels)}
    closest_real = float(to_train["held_out_images"].min())
    copies = int((to_train["samples"] < closest_real).sum())
    on_samples = class_recalls(score_run(judge, made, sample_rows)["cm"], classes)
    on_photos = class_recalls(score_run(judge, root, real_test)["cm"], classes)
    # the same photos at the samples' size: how much of a low recall is the judge's, not the samples'
    small = args.work / f"held_out_{size}px_split{args.split_seed}"
    for r, image in zip(real_test, pixels(root, [r["path"] for r in real_test]), strict=True):
        (small / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(small / r["path"])
    on_small_photos = class_recalls(score_run(judge, small, real_test)["cm"], classes)
    results = {"data": str(args.data), "split_seed": args.split_seed, "run": str(args.run),
               "images": str(args.images) if args.images else None,
               "diffusion_training": to_plain(DiffusionRun.load(args.run).train),
               **({} if args.images else {"per_class": args.per_class, "steps": args.steps, "guidance": args.guidance}),
               "classifier": str(judge),
               "classifier_training": to_plain(ClassifierRun.load(judge).train), "classes": classes,
               "samples": on_samples, "held_out_images": on_photos, f"held_out_images_at_{size}px": on_small_photos,
               "nearest_training_image": {k: {"median": float(np.median(v)), "min": float(v.min()),
                                              "per_image": v.tolist()} for k, v in to_train.items()},
               "samples_nearer_than_any_held_out_image": copies}
    lines = [f"A ResNet-18 of the demo's recipe ({args.epochs} epochs, {args.input_size} px), trained on split seed "
             f"{args.split_seed}'s training images of {args.data}, classifies "
             + (f"the {len(sample_rows)} images of {args.images}, made by the diffusion RUN (trained on the same "
                f"images)" if args.images else
                f"{args.per_class} samples per class of the diffusion RUN (trained on the same images; {args.steps} "
                f"steps, guidance {args.guidance})")
             + f" and the split's held-out images. Chance: {1 / len(classes):.2f}.", "",
             f"| class | samples recognised (n) | held-out images recognised (n) | the same at {size} px "
             "| samples taken for |",
             "|---|---|---|---|---|"]
    for name in classes:
        s, p, q = on_samples.get(name), on_photos.get(name), on_small_photos.get(name)
        cell = (lambda r: f"{r['recall']:.2f} ({r['images']})" if r else "-")
        mistakes = ", ".join(f"{k} x{v}" for k, v in sorted(s["taken_for"].items(), key=lambda kv: -kv[1])) if s else ""
        lines.append(f"| {name} | {cell(s)} | {cell(p)} | {cell(q)} | {mistakes} |")
    mean = np.mean([r["recall"] for r in on_samples.values()])
    near_s, near_h = to_train["samples"], to_train["held_out_images"]
    lines += ["", f"Mean recall over the samples' {len(on_samples)} classes: {mean:.2f}.", "",
              f"Copies: the nearest training image (RMS difference, 0-255, at {size} px, any flip or turn) is "
              f"{np.median(near_s):.1f} away from the median sample (nearest {near_s.min():.1f}) and "
              f"{np.median(near_h):.1f} from the median held-out image (nearest {closest_real:.1f}); "
              f"{copies} of {len(near_s)} samples are nearer to a training image than any held-out image is."]
    _, md = write_results(args.out, f"diffusion_recognition{'_' + args.name if args.name else ''}", results,
                          "\n".join(lines))
    print(md.read_text())


if __name__ == "__main__":
    main()
