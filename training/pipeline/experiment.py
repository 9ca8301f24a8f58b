"""``flare experiment``: the paper's comparison, Raw_LR vs Raw_Aug_LR vs FLARE, on one split.

All three arms train the same backbone with the same settings on a leak-free split of the
raw low-resolution images, and are scored on the same held-out raw images:

* **Raw_LR**: the raw LR training images as they are.
* **Raw_Aug_LR**: the raw LR images plus the five standard augmentations (no SR, no diffusion).
* **FLARE**: stage 1 (SwinIR x4, then the augmentations), stage 2 (class-conditioned
  diffusion samples from the stage-1 originals) and the weighted merge.

Only training-split originals ever enter the augmentation stages; validation and test images
are raw originals, so no variant of a test image is trained on. Out-of-domain scores use sets
the trainer never sees: for data with HR twins the test originals degraded harder (for
Stellarium's photos a real out-of-domain set) and a synthetic generation with other seeds and
that harsher degradation, plus any ImageFolder the user names. A mixed data set (``flare data
mix``) is also scored on its real test photos alone. Every step (:func:`recipe` lists them in
order) leaves its outputs in the experiment folder and is skipped when they are already there,
or resumes by itself, so a stopped experiment resumes.
The settings are recorded in ``experiment.json`` first, and a re-run with other settings is
refused (more ``--model`` backbones may be added), so results never mix two settings.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flare.runtime.core.runs import ClassifierTraining, DiffusionTraining, SRTraining
from flare.runtime.foundation.atomic import save_png, touch, write_json, write_text
from flare.runtime.io.images import load_rgb
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.fingerprint import check_settings, fingerprint_path
from flare.runtime.foundation.progress import log
from flare.training.classifiers.train import score_run, train
from flare.training.data.folders import link_tree, resolve_root, scan_image_folder
from flare.training.data.mix import real_files
from flare.training.data.splits import check_split, group_of, read_split, split_groups, write_split
from flare.training.data.synth import HARSHER, SynthConfig, degrade, synthesize
from flare.training.diffusion.train import train_diffusion
from flare.training.pipeline.augment import AUGMENTATIONS
from flare.training.pipeline.chain import stage1_originals
from flare.training.pipeline.intervals import LEVEL, estimate, paired_difference
from flare.training.pipeline.merge import MergeConfig, merge
from flare.training.pipeline.stage1 import Stage1Config, run_stage1
from flare.training.pipeline.stage2 import Stage2Config, augment_stage2
from flare.training.sr.train import train_sr

ARMS = ("Raw_LR", "Raw_Aug_LR", "FLARE")
#: In-domain scores: all test originals, and for a mixed DATA its real photos alone.
REAL_SET = "in-domain real photos"
IN_DOMAIN = ("in-domain", REAL_SET)
HARSHER_SET = "held-out, harsher"
#: The pair whose difference the results judge: FLARE against the standard augmentations alone.
COMPARED = ("FLARE", "Raw_Aug_LR")
#: Marks a training step of the experiment as finished (the run folder alone may be half done).
DONE = ".complete"


@dataclass
class ExperimentConfig:
    models: tuple[str, ...] = ("resnet18",)
    seeds: int = 3
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


def backbone_seeds(cfg: ExperimentConfig) -> list[int]:
    """The seeds each backbone is trained with: ``--seed`` and the ``--seeds`` - 1 after it."""
    return [cfg.seed + k for k in range(cfg.seeds)]


def _map_split(split_rows: list[dict[str, str]], data: Path) -> list[dict[str, str]]:
    """Rows of the ImageFolder ``data`` with each file's split taken from its original's group."""
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
    scores = score_run(run, root, rows)
    return {"acc": scores["acc"], "macro_f1": scores["macro_f1"], "images": int(scores["cm"].sum())}


# --- the experiment folder -----------------------------------------------------------------------------------------


class Experiment:
    """Where every step reads and writes, named once.

    Every path follows from DATA, ``--out`` and the settings alone, so a step that is skipped
    because it is done leaves the later steps all they need. The two values that are not
    files, the scores and the results, are made afresh on every run.
    """

    def __init__(self, data: Path, out: Path, cfg: ExperimentConfig, device: str) -> None:
        self.data, self.out, self.cfg, self.device = Path(data), Path(out), cfg, device
        #: The raw low-resolution originals, and their HR twins when DATA has them (SR trains on the pairs).
        self.raw = resolve_root(self.data / "lr") if (self.data / "lr").is_dir() else resolve_root(self.data)
        self.hr = self.data / "hr" if (self.data / "hr").is_dir() else None
        self.split_file = self.out / "split.csv"
        #: Stage inputs: the training-split originals only.
        self.raw_train = self.out / "raw_train"
        self.raw_aug = self.out / "raw_aug"
        self.flare = self.out / "flare"
        self.sr_run, self.diffusion_run = self.out / "sr_run", self.out / "diffusion_run"
        self.scores: dict[str, dict[str, dict[str, Any]]] = {}
        #: Per backbone and set: FLARE - Raw_Aug_LR accuracy, paired by seed (see :mod:`intervals`).
        self.differences: dict[str, dict[str, dict[str, Any]]] = {}
        self.results: dict[str, Any] = {}

    @cached_property
    def split(self) -> list[dict[str, str]]:
        """The rows of ``split.csv``, read (and checked against the originals) once it exists."""
        return read_split(self.split_file, self.raw)

    def rows(self, part: str) -> list[dict[str, str]]:
        """The originals of one part of the split: ``train``, ``val`` or ``test``."""
        return [r for r in self.split if r["split"] == part]

    @property
    def sr_model(self) -> Path:
        return Path(self.cfg.sr) if self.cfg.sr is not None else self.sr_run

    @property
    def diffusion_model(self) -> str:
        return self.cfg.diffusion if self.cfg.diffusion is not None else str(self.diffusion_run)

    @property
    def synthetic_ood(self) -> Path | None:
        """The synthetic out-of-domain set, made only for synthetic data (which has HR twins)."""
        return self.out / "ood_synthetic" if self.cfg.synthetic_ood and self.hr is not None else None

    @property
    def harsher_ood(self) -> Path | None:
        """The test originals degraded harder (see :func:`degrade_held_out`), for data with HR twins."""
        return self.out / "ood_harsher" if self.hr is not None else None

    def ood_sets(self) -> dict[str, Path]:
        """Out-of-domain ImageFolders by the name they have in the results."""
        sets = {"synthetic OOD": self.synthetic_ood / "lr"} if self.synthetic_ood is not None else {}
        if self.harsher_ood is not None:
            sets[HARSHER_SET] = self.harsher_ood
        return sets | {Path(extra).name: Path(extra) for extra in self.cfg.ood}

    @cached_property
    def real_photos(self) -> set[str]:
        """The paths of a mixed DATA's (``flare data mix``) real photos; empty for other data."""
        return real_files(self.data)

    def arm_images(self) -> dict[str, Path]:
        """The folder each arm takes its training images from."""
        return {"Raw_LR": self.raw_train, "Raw_Aug_LR": self.raw_aug, "FLARE": self.flare / "merged"}

    def arm_set(self, arm: str) -> tuple[Path, Path]:
        """An arm's training set, with the raw validation and test originals: its folder and its split file."""
        return self.out / f"set_{arm}", self.out / f"split_{arm}.csv"

    @property
    def seeds(self) -> list[int]:
        """The backbone seeds: ``--seed`` and the ones after it."""
        return backbone_seeds(self.cfg)

    def backbone_run(self, model: str, seed: int, arm: str) -> Path:
        return self.out / "runs" / model / f"seed{seed}" / arm

    @staticmethod
    def finished(run: Path) -> bool:
        """Whether the SR or diffusion training of ``run`` finished (its folder alone may be half done)."""
        return (run / DONE).exists()


# --- the recipe ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of the recipe: ``run`` makes its outputs; ``done`` says there is nothing left to do.

    A step without ``done`` runs every time: it resumes by itself, image by image (the
    augmentation stages), is quick and redone (links, merge, scores), or must never be
    skipped (the settings check).
    """

    run: Callable[[Experiment], None]
    done: Callable[[Experiment], bool] | None = None


def recipe(cfg: ExperimentConfig) -> list[Step]:
    """The experiment, step by step, in the order of the paper's recipe."""
    return [
        Step(record_settings),
        Step(make_split, done=lambda exp: exp.split_file.exists()),
        Step(set_aside_training_originals),
        Step(augment_raw),  # the Raw_Aug_LR arm
        Step(train_sr_model, done=lambda exp: exp.cfg.sr is not None or exp.finished(exp.sr_run)),
        Step(flare_stage1),
        Step(train_diffusion_model, done=lambda exp: exp.cfg.diffusion is not None or exp.finished(exp.diffusion_run)),
        Step(flare_stage2),
        Step(flare_merge),
        Step(assemble_arms),
        Step(synthesize_ood, done=lambda exp: exp.synthetic_ood is None),
        Step(degrade_held_out, done=lambda exp: exp.harsher_ood is None or exp.finished(exp.harsher_ood)),
        *(Step(partial(train_backbone, model=model, seed=seed, arm=arm),
               done=partial(backbone_trained, model=model, seed=seed, arm=arm))
          for model in cfg.models for seed in backbone_seeds(cfg) for arm in ARMS),
        Step(evaluate_backbones),
        Step(write_results),
    ]


def run_experiment(data: Path, out: Path, cfg: ExperimentConfig, device: str = "auto") -> dict[str, Any]:
    """Run (or resume) every step; returns the results also written to ``results.json``."""
    exp = Experiment(data, out, cfg, device)
    for step in recipe(cfg):
        if step.done is None or not step.done(exp):
            step.run(exp)
    return exp.results


# --- the steps: what each needs and makes ---------------------------------------------------------------------------


def record_settings(exp: Experiment) -> None:
    """Keep the settings in ``experiment.json``; refuse other settings for a started experiment.

    The first step, and run every time, so a re-run with other settings changes nothing.
    Backbones are trained and scored independently, so ``models`` and ``seeds`` may change
    (more seeds train more backbones; fewer score a subset of those trained); every other
    setting changes what the arms are trained on. Given SR and diffusion models are recorded
    by checksum, so retraining one of them in place is noticed too.
    """
    exp.out.mkdir(parents=True, exist_ok=True)
    settings = {f"--{k.replace('_', '-')}": v for k, v in asdict(exp.cfg).items() if k not in ("models", "seeds")}
    settings["DATA"] = str(exp.data.resolve())
    for key in ("--sr", "--diffusion"):
        if settings[key] is not None:
            settings[key] = {"path": settings[key], "sha256": fingerprint_path(Path(settings[key]))}
    started = any(p.name != "experiment.json" for p in exp.out.iterdir())
    check_settings(exp.out / "experiment.json", settings, str(exp.out),
                   "re-run with the options it was started with to resume it, or give a new --out", has_results=started)


def make_split(exp: Experiment) -> None:
    """The leak-free split of the raw originals, by group: makes ``split.csv``, once."""
    samples, _ = scan_image_folder(exp.raw)
    rows = split_groups(samples, seed=exp.cfg.seed)
    check_split(rows, exp.raw)
    write_split(rows, exp.split_file)


def set_aside_training_originals(exp: Experiment) -> None:
    """Needs the split; makes ``raw_train/``, links to the training originals: the stages' only input."""
    log(f"experiment in {exp.out}: {len(exp.rows('train'))} training originals, "
        f"{len(exp.rows('val'))} validation, {len(exp.rows('test'))} test")
    link_tree([(exp.raw / r["path"], r["path"]) for r in exp.rows("train")], exp.raw_train)


def augment_raw(exp: Experiment) -> None:
    """Raw_Aug_LR: needs ``raw_train/``; makes ``raw_aug/``, its five standard augmentations at the raw resolution."""
    lr_side = int(np.median([min(Image.open(exp.raw / r["path"]).size) for r in exp.rows("train")[:50]]))
    run_stage1(exp.raw_train, None, exp.raw_aug, Stage1Config(size=lr_side, seed=exp.cfg.seed), device=exp.device)


def train_sr_model(exp: Experiment) -> None:
    """Unless ``--sr`` gives one: needs DATA/hr; makes ``sr_run/``, a SwinIR trained on the training HR/LR pairs."""
    if exp.hr is None:
        raise UsageError(f"{exp.data} has no hr/ folder to train SR on; pass --sr with a SwinIR checkpoint")
    hr_train = link_tree([(exp.hr / r["path"], r["path"]) for r in exp.rows("train")], exp.out / "hr_train")
    cfg = exp.cfg
    train_sr(SRTraining(data=str(hr_train.resolve()), low_res_dir=str(exp.raw_train.resolve()), epochs=cfg.sr_epochs,
                        steps_per_epoch=cfg.sr_steps, batch=16, patch=64, lr=5e-4, seed=cfg.seed),
             exp.sr_run, resume=(exp.sr_run / "train_state.pt").exists(), device=exp.device)
    touch(exp.sr_run / DONE)


def flare_stage1(exp: Experiment) -> None:
    """FLARE stage 1: needs ``raw_train/`` and the SR model; makes ``flare/stage1/``, super-resolved and augmented."""
    run_stage1(exp.raw_train, exp.sr_model, exp.flare / "stage1", Stage1Config(size=exp.cfg.size, seed=exp.cfg.seed),
               device=exp.device)


def train_diffusion_model(exp: Experiment) -> None:
    """Unless ``--diffusion`` gives one: needs ``flare/stage1/`` (the model learns the super-resolved images);
    makes ``diffusion_run/``."""
    cfg = exp.cfg
    train_diffusion(DiffusionTraining(data=str((exp.flare / "stage1").resolve()), epochs=cfg.diffusion_epochs,
                                      vae_epochs=cfg.diffusion_vae_epochs, seed=cfg.seed,
                                      sample_every=max(cfg.diffusion_epochs // 4, 1)),
                    exp.diffusion_run, resume=exp.diffusion_run.exists(), device=exp.device)
    touch(exp.diffusion_run / DONE)


def flare_stage2(exp: Experiment) -> None:
    """FLARE stage 2: needs the stage-1 originals and the diffusion model; makes ``flare/stage2/``, their samples."""
    cfg = exp.cfg
    sources = stage1_originals(exp.flare / "stage1", exp.flare / "stage1_originals")
    augment_stage2(sources, exp.diffusion_model, exp.flare / "stage2",
                   Stage2Config(per_image=cfg.per_image, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed),
                   device=exp.device)


def flare_merge(exp: Experiment) -> None:
    """FLARE merge: needs both stages; makes ``flare/merged/``, the FLARE arm's training images, weighted."""
    cfg = exp.cfg
    merge(exp.flare / "stage1", exp.flare / "stage2", exp.flare / "merged",
          MergeConfig(alpha=cfg.alpha, beta=cfg.beta, select=cfg.select, seed=cfg.seed))


def assemble_arms(exp: Experiment) -> None:
    """Needs each arm's images; makes ``set_<arm>/`` and ``split_<arm>.csv``: them and the raw held-out originals."""
    held_out = [r for r in exp.split if r["split"] != "train"]
    for arm, folder in exp.arm_images().items():
        rows = [r for r in _map_split(exp.split, folder) if r["split"] == "train"]
        root, split_file = exp.arm_set(arm)
        link_tree([(folder / r["path"], r["path"]) for r in rows] +
                  [(exp.raw / r["path"], r["path"]) for r in held_out], root)
        write_split(rows + held_out, split_file)


def synthesize_ood(exp: Experiment) -> None:
    """For synthetic data: makes ``ood_synthetic/``, a generation with other seeds and a harsher degradation,
    in the look the data was made in."""
    assert exp.synthetic_ood is not None
    synth = json.loads((exp.data / "synth.json").read_text()) if (exp.data / "synth.json").exists() else {}
    synthesize(exp.synthetic_ood, SynthConfig(per_class=max(int(synth.get("per_class", 20)) // 2, 10),
                                              size=int(synth.get("size", 128)), seed=exp.cfg.seed + 1000,
                                              look=str(synth.get("look", "classic")), **HARSHER))


def degrade_held_out(exp: Experiment) -> None:
    """For data with HR twins: makes ``ood_harsher/``, the test originals' HR images degraded harder
    than the training data (a brighter gamma stretch, then :data:`HARSHER`'s wider PSF, more noise
    and stronger JPEG) at the same scale: for real photos, a real out-of-domain set."""
    assert exp.harsher_ood is not None and exp.hr is not None
    for i, r in enumerate(exp.rows("test")):
        target = exp.harsher_ood / r["path"]
        if target.exists():
            continue
        hr, lr = load_rgb(exp.hr / r["path"]), load_rgb(exp.raw / r["path"])
        rng = np.random.default_rng([exp.cfg.seed, 2000, i])
        stretched = 255.0 * (hr / 255.0) ** rng.uniform(0.5, 0.8)
        save_png(degrade(np.clip(np.rint(stretched), 0, 255).astype(np.uint8), rng,
                         max(hr.shape[0] // lr.shape[0], 1), **HARSHER), target)
    touch(exp.harsher_ood / DONE)


def backbone_trained(exp: Experiment, model: str, seed: int, arm: str) -> bool:
    """A backbone's run is done once it has its test results (``train`` writes them last)."""
    return (exp.backbone_run(model, seed, arm) / "results.json").exists()


def train_backbone(exp: Experiment, model: str, seed: int, arm: str) -> None:
    """Needs the arm's set; makes ``runs/<model>/seed<S>/<arm>/``, resuming a run that stopped.

    The seed sets the backbone's initialisation and data order; the split and the augmented
    sets are the same for every seed (their stage models are the experiment's costliest part).
    """
    cfg, run = exp.cfg, exp.backbone_run(model, seed, arm)
    root, split_file = exp.arm_set(arm)
    resume = (run / "train_state.pt").exists()
    log(f"training {model} on {arm}, seed {seed} ({sum(1 for _ in open(split_file)) - 1} rows)")
    train(ClassifierTraining(model=model, data=str(root.resolve()), epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr,
                             step_size=max(cfg.epochs // 3, 1), input_size=cfg.input_size, seed=seed),
          run, split=None if resume else split_file, resume=resume, device=exp.device)


def evaluate_backbones(exp: Experiment) -> None:
    """Needs every run; scores each on the raw test originals (in-domain) and on each out-of-domain set,
    then summarises the seeds: a mean and 95% interval per cell, and FLARE - Raw_Aug_LR paired by seed."""
    ood = exp.ood_sets()
    sets = {"in-domain": (exp.raw, exp.rows("test"))}
    if exp.real_photos:
        sets[REAL_SET] = (exp.raw, [r for r in exp.rows("test") if r["path"] in exp.real_photos])
    for name, folder in ood.items():
        samples, _ = scan_image_folder(folder)
        sets[name] = (resolve_root(folder), [{"path": s.path, "label": s.label} for s in samples])
    for model in exp.cfg.models:
        per_seed = {arm: {name: [_evaluate(exp.backbone_run(model, seed, arm), root, rows) for seed in exp.seeds]
                          for name, (root, rows) in sets.items()} for arm in ARMS}
        exp.scores[model] = {arm: {name: _summary(runs, exp.seeds) for name, runs in by_set.items()}
                             for arm, by_set in per_seed.items()}
        a, b = COMPARED
        exp.differences[model] = {
            name: paired_difference([r["acc"] for r in per_seed[a][name]],
                                    [r["acc"] for r in per_seed[b][name]]).to_dict() for name in sets}


def _summary(runs: list[dict[str, float]], seeds: list[int]) -> dict[str, Any]:
    """One cell: the mean accuracy and macro-F1 over seeds, their intervals, and each seed's scores."""
    acc, f1 = estimate([r["acc"] for r in runs]), estimate([r["macro_f1"] for r in runs])
    return {"acc": acc.mean, "macro_f1": f1.mean, "images": runs[0]["images"],
            "acc_interval": [acc.low, acc.high], "macro_f1_interval": [f1.low, f1.high],
            "seeds": [{"seed": seed, **r} for seed, r in zip(seeds, runs)]}


def write_results(exp: Experiment) -> None:
    """Needs the scores; makes ``results.md`` and, last (it marks the experiment as done), ``results.json``."""
    exp.results = {"config": asdict(exp.cfg), "augmentations": list(AUGMENTATIONS), "models": exp.scores,
                   "seeds": exp.seeds, "compared": list(COMPARED), "differences": exp.differences,
                   "machine": {"platform": platform.platform(), "python": platform.python_version(),
                               "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
                   "training_images": {arm: sum(1 for r in read_split(exp.arm_set(arm)[1]) if r["split"] == "train")
                                       for arm in ARMS}}
    write_text(exp.out / "results.md", format_table(exp.results))
    write_json(exp.out / "results.json", exp.results)


def format_table(results: dict[str, Any]) -> str:
    """Markdown shaped like the paper's table (backbone x method, sets as columns, deltas against
    Raw_LR), each cell a mean over seeds with its 95% interval's half-width, then what the paired
    FLARE - Raw_Aug_LR differences say, in words."""
    models, seeds = results["models"], results.get("seeds", [results["config"]["seed"]])
    first = next(iter(models.values()))
    sets = list(next(iter(first.values())).keys())
    ood_sets = [s for s in sets if s not in IN_DOMAIN]
    head = ["Backbone", "Method", "train images", *[f"{s} acc" for s in sets], "in-domain macro-F1"]
    if ood_sets:
        head.append("OOD average acc")
    lines = [f"Accuracy in %, mean over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})"
             + (f" ± half the {LEVEL:.0%} t interval" if len(seeds) > 1 else "") + "; in brackets the change from Raw_LR.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, arms in models.items():
        base = arms["Raw_LR"]
        for arm, scores in arms.items():
            cells = [model, arm, str(results.get("training_images", {}).get(arm, ""))]
            for s in sets:
                delta = 100 * (scores[s]["acc"] - base[s]["acc"])
                cells.append(_cell(scores[s], "acc") + ("" if arm == "Raw_LR" else f" ({delta:+.2f})"))
            cells.append(_cell(scores["in-domain"], "macro_f1"))
            if ood_sets:
                avg = np.mean([100 * scores[s]["acc"] for s in ood_sets])
                base_avg = np.mean([100 * base[s]["acc"] for s in ood_sets])
                cells.append(f"{avg:.2f}" + ("" if arm == "Raw_LR" else f" ({avg - base_avg:+.2f})"))
            lines.append("| " + " | ".join(cells) + " |")
    a, b = results.get("compared", COMPARED)
    lines += ["", f"{a} - {b}, accuracy paired by seed:", ""]
    for model, by_set in results.get("differences", {}).items():
        for name, d in by_set.items():
            lines.append(f"- {model}, {name}: {_verdict(d)}")
    return "\n".join(lines) + "\n"


def _cell(scores: dict[str, Any], key: str) -> str:
    """``mean ± half-width`` in percent (the mean alone with one seed)."""
    low, high = scores.get(f"{key}_interval", [None, None])
    text = f"{100 * scores[key]:.2f}"
    return text if low is None else text + f" ± {100 * (high - low) / 2:.2f}"


def _verdict(d: dict[str, Any]) -> str:
    """One difference in words: its size, its interval, and whether it is significant."""
    size = f"{100 * d['mean']:+.2f} points"
    if d["low"] is None:
        return f"{size}; one seed, so no interval and no claim of significance"
    interval = f"{LEVEL:.0%} interval [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}] over {d['n']} seeds"
    if not d["significant"]:
        return f"{size}, {interval}: not significant (the interval includes 0)"
    return f"{size}, {interval}: significant, FLARE {'better' if d['mean'] > 0 else 'worse'}"
