"""``flare experiment``: the paper's comparison, Raw_LR vs Raw_Aug_LR vs FLARE, on one split.

All three arms train the same backbone with the same settings on a leak-free split of the
raw low-resolution images, and are scored on the same held-out raw images:

* **Raw_LR**: the raw LR training images as they are.
* **Raw_Aug_LR**: the raw LR images plus the five standard augmentations (no SR, no diffusion).
* **FLARE**: stage 1 (SwinIR x4, then the augmentations), stage 2 (class-conditioned
  diffusion samples from the stage-1 originals) and the weighted merge.

Only training-split originals ever enter the augmentation stages; validation and test images
are raw originals, so no variant of a test image is trained on. Out-of-domain scores use sets
the trainer never sees: for synthetic data a generation with other seeds and a harsher
degradation, plus any ImageFolder the user names. Every step leaves its outputs in the
experiment folder and is skipped when they are already there, so a stopped experiment resumes.
The settings are recorded in ``experiment.json`` first, and a re-run with other settings is
refused (more ``--model`` backbones may be added), so results never mix two settings.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flare.runtime.foundation.atomic import touch, write_json, write_text
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.fingerprint import check_settings, fingerprint_path
from flare.runtime.foundation.progress import log
from flare.training.data.folders import resolve_root, scan_image_folder
from flare.training.data.splits import check_split, read_split, split_groups, write_split

ARMS = ("Raw_LR", "Raw_Aug_LR", "FLARE")
#: Marks a training step of the experiment as finished (the run folder alone may be half done).
DONE = ".complete"


@dataclass
class ExperimentConfig:
    models: tuple[str, ...] = ("resnet18",)
    epochs: int = 15
    batch: int = 32
    lr: float = 1e-3
    input_size: int = 64
    seed: int = 0
    size: int = 128
    sr: str | None = None
    sr_epochs: int = 6
    sr_steps: int = 100
    diffusion: str | None = None
    diffusion_epochs: int = 40
    diffusion_vae_epochs: int = 8
    per_image: int = 4
    steps: int = 20
    guidance: float = 4.0
    alpha: float = 0.5
    beta: float = 1.0
    select: str = "percentile"
    ood: tuple[str, ...] = ()
    synthetic_ood: bool = True


def _map_split(split_rows: list[dict[str, str]], data: Path) -> list[dict[str, str]]:
    """Rows of the ImageFolder ``data`` with each file's split taken from its original's group."""
    from flare.training.data.splits import group_of

    of_group = {r["group"]: r["split"] for r in split_rows}
    samples, _ = scan_image_folder(data)
    rows = []
    for s in samples:
        g = group_of(s.path)
        if g not in of_group:
            raise UsageError(f"{data / s.path} derives from no image of the split (group {g})")
        rows.append({"path": s.path, "label": s.label, "group": g, "split": of_group[g]})
    return rows


def _evaluate(run: Path, root: Path, rows: list[dict[str, str]]) -> dict[str, float]:
    """Accuracy and macro-F1 of a trained run on image rows (paths relative to ``root``)."""
    import torch
    from torch.utils.data import DataLoader

    from flare.training.classifiers.train import ImageDataset, build_from_run, evaluate

    model, config, _ = build_from_run(run)
    classes, label_map = config.classes, config.label_map
    rows = [r for r in rows if r["label"] in label_map]
    target_of = {fine: classes.index(label_map[fine]) for fine in label_map}
    ds = ImageDataset(rows, root, config.preprocessing, target_of, cache=False)
    scores = evaluate(model, DataLoader(ds, batch_size=64), torch.device("cpu"), len(classes), amp=False)
    return {"acc": scores["acc"], "macro_f1": scores["macro_f1"], "images": int(scores["cm"].sum())}


def record_settings(data: Path, out: Path, cfg: ExperimentConfig) -> None:
    """Keep the settings in ``experiment.json``; refuse other settings for a started experiment.

    Backbones are trained and scored independently, so ``models`` may change; every other
    setting changes what the arms are trained on. Given SR and diffusion models are recorded by
    checksum, so retraining one of them in place is noticed too.
    """
    settings = {f"--{k.replace('_', '-')}": v for k, v in asdict(cfg).items() if k != "models"}
    settings["DATA"] = str(Path(data).resolve())
    for key in ("--sr", "--diffusion"):
        if settings[key] is not None:
            settings[key] = {"path": settings[key], "sha256": fingerprint_path(Path(settings[key]))}
    started = any(p.name != "experiment.json" for p in out.iterdir())
    check_settings(out / "experiment.json", settings, str(out),
                   "re-run with the options it was started with to resume it, or give a new --out", has_results=started)


def run_experiment(data: Path, out: Path, cfg: ExperimentConfig, device: str = "auto") -> dict[str, Any]:
    """Run (or resume) every step; returns the results also written to ``results.json``."""
    from flare.training.pipeline.augment import AUGMENTATIONS
    from flare.training.pipeline.merge import MergeConfig
    from flare.training.pipeline.chain import augment_all, link_tree
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1
    from flare.training.pipeline.stage2 import Stage2Config
    from flare.training.data.synth import SynthConfig, synthesize
    from flare.runtime.core.runs import ClassifierTraining, DiffusionTraining, SRTraining
    from flare.training.classifiers.train import train
    from flare.training.diffusion.train import train_diffusion
    from flare.training.sr.train import train_sr

    data, out = Path(data), Path(out)
    raw = resolve_root(data / "lr") if (data / "lr").is_dir() else resolve_root(data)
    hr = data / "hr" if (data / "hr").is_dir() else None
    out.mkdir(parents=True, exist_ok=True)
    record_settings(data, out, cfg)

    split_path = out / "split.csv"
    if not split_path.exists():
        samples, _ = scan_image_folder(raw)
        rows = split_groups(samples, seed=cfg.seed)
        check_split(rows, raw)
        write_split(rows, split_path)
    split = read_split(split_path, raw)
    train_rows = [r for r in split if r["split"] == "train"]
    log(f"experiment in {out}: {len(train_rows)} training originals, "
        f"{sum(r['split'] == 'val' for r in split)} validation, {sum(r['split'] == 'test' for r in split)} test")

    # Stage inputs: training-split originals only.
    raw_train = link_tree([(raw / r["path"], r["path"]) for r in train_rows], out / "raw_train")

    # Raw_Aug_LR: standard augmentations at the raw resolution, no SR.
    lr_side = int(np.median([min(Image.open(raw / r["path"]).size) for r in train_rows[:50]]))
    run_stage1(raw_train, None, out / "raw_aug", Stage1Config(size=lr_side, seed=cfg.seed), device=device)

    # FLARE stage 1: SR (given, or trained here on the training HR/LR pairs), then augmentations.
    sr = cfg.sr
    if sr is None:
        if hr is None:
            raise UsageError(f"{data} has no hr/ folder to train SR on; pass --sr with a SwinIR checkpoint")
        hr_train = link_tree([(hr / r["path"], r["path"]) for r in train_rows], out / "hr_train")
        lr_train = raw_train
        sr_run = out / "sr_run"
        if not (sr_run / DONE).exists():
            train_sr(SRTraining(data=str(hr_train.resolve()), low_res_dir=str(lr_train.resolve()),
                                epochs=cfg.sr_epochs, steps_per_epoch=cfg.sr_steps, batch=16, patch=64,
                                lr=5e-4, seed=cfg.seed), sr_run, resume=(sr_run / "train_state.pt").exists(),
                     device=device)
            touch(sr_run / DONE)
        sr = str(sr_run)
    diffusion = cfg.diffusion
    if diffusion is None:
        # stage 1 first: the diffusion model learns from the stage-1 (super-resolved) images
        s1 = Stage1Config(size=cfg.size, seed=cfg.seed)
        run_stage1(raw_train, Path(sr), out / "flare" / "stage1", s1, device=device)
        diff_run = out / "diffusion_run"
        if not (diff_run / DONE).exists():
            resume = diff_run.exists()
            train_diffusion(DiffusionTraining(data=str((out / "flare" / "stage1").resolve()),
                                                 epochs=cfg.diffusion_epochs, vae_epochs=cfg.diffusion_vae_epochs,
                                                 seed=cfg.seed, sample_every=max(cfg.diffusion_epochs // 4, 1)),
                            diff_run, resume=resume, device=device)
            touch(diff_run / DONE)
        diffusion = str(diff_run)
    flare = augment_all(raw_train, Path(sr), diffusion, out / "flare",
                        Stage1Config(size=cfg.size, seed=cfg.seed),
                        Stage2Config(per_image=cfg.per_image, steps=cfg.steps, guidance=cfg.guidance,
                                     seed=cfg.seed),
                        MergeConfig(alpha=cfg.alpha, beta=cfg.beta, select=cfg.select, seed=cfg.seed),
                        device=device)

    # The training sets of the three arms, each with the raw validation and test originals.
    held_out = [r for r in split if r["split"] != "train"]
    arms: dict[str, tuple[Path, Path]] = {}
    for arm, folder in (("Raw_LR", raw_train), ("Raw_Aug_LR", out / "raw_aug"), ("FLARE", flare)):
        rows = [r for r in _map_split(split, folder) if r["split"] == "train"]
        root = out / f"set_{arm}"
        link_tree([(folder / r["path"], r["path"]) for r in rows] +
                   [(raw / r["path"], r["path"]) for r in held_out], root)
        rows += held_out
        write_split(rows, out / f"split_{arm}.csv")
        arms[arm] = (root, out / f"split_{arm}.csv")

    # Out-of-domain sets.
    ood: dict[str, Path] = {}
    if cfg.synthetic_ood and hr is not None:
        synth_cfg = json.loads((data / "synth.json").read_text()) if (data / "synth.json").exists() else {}
        ood_dir = out / "ood_synthetic"
        synthesize(ood_dir, SynthConfig(per_class=max(int(synth_cfg.get("per_class", 20)) // 2, 10),
                                        size=int(synth_cfg.get("size", 128)), seed=cfg.seed + 1000,
                                        blur_sigma=(1.0, 2.5), noise_sigma=(4.0, 12.0), jpeg_quality=(20, 60)))
        ood["synthetic OOD"] = ood_dir / "lr"
    for extra in cfg.ood:
        ood[Path(extra).name] = Path(extra)

    results: dict[str, Any] = {"config": asdict(cfg), "augmentations": list(AUGMENTATIONS), "models": {}}
    test_rows = [r for r in split if r["split"] == "test"]
    for model in cfg.models:
        per_arm = {}
        for arm in ARMS:
            root, split_file = arms[arm]
            run = out / "runs" / model / arm
            if not (run / "results.json").exists():
                resume = (run / "train_state.pt").exists()
                log(f"training {model} on {arm} ({sum(1 for _ in open(split_file)) - 1} rows)")
                train(ClassifierTraining(model=model, data=str(root.resolve()), epochs=cfg.epochs, batch=cfg.batch,
                                         lr=cfg.lr, step_size=max(cfg.epochs // 3, 1), input_size=cfg.input_size,
                                         seed=cfg.seed),
                      run, split=None if resume else split_file, resume=resume, device=device)
            scores = {"in-domain": _evaluate(run, raw, test_rows)}
            for name, folder in ood.items():
                samples, _ = scan_image_folder(folder)
                scores[name] = _evaluate(run, resolve_root(folder), [{"path": s.path, "label": s.label} for s in samples])
            per_arm[arm] = scores
        results["models"][model] = per_arm
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    counts = {arm: sum(1 for r in read_split(arms[arm][1]) if r["split"] == "train") for arm in ARMS}
    results["training_images"] = counts
    write_text(out / "results.md", format_table(results))
    write_json(out / "results.json", results)  # last: it marks the experiment as done
    return results


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table shaped like the paper's: backbone x method, sets as columns, with deltas."""
    models = results["models"]
    first = next(iter(models.values()))
    sets = list(next(iter(first.values())).keys())
    ood_sets = [s for s in sets if s != "in-domain"]
    head = ["Backbone", "Method", "train images", *[f"{s} acc" for s in sets], "in-domain macro-F1"]
    if ood_sets:
        head.append("OOD average acc")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, arms in models.items():
        base = arms["Raw_LR"]
        for arm, scores in arms.items():
            cells = [model, arm, str(results.get("training_images", {}).get(arm, ""))]
            for s in sets:
                acc = 100 * scores[s]["acc"]
                delta = acc - 100 * base[s]["acc"]
                cells.append(f"{acc:.2f}" + ("" if arm == "Raw_LR" else f" ({delta:+.2f})"))
            cells.append(f"{100 * scores['in-domain']['macro_f1']:.2f}")
            if ood_sets:
                avg = np.mean([100 * scores[s]["acc"] for s in ood_sets])
                base_avg = np.mean([100 * base[s]["acc"] for s in ood_sets])
                cells.append(f"{avg:.2f}" + ("" if arm == "Raw_LR" else f" ({avg - base_avg:+.2f})"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
