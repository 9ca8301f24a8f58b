"""``flare train``: train a classifier on a leak-free split, with checkpoints and resume.

The recipe defaults are the FLARE authors' (Adam lr 2e-5, StepLR 10 / 0.5, 50 epochs, batch
64, 224 px, ImageNet normalisation, best-validation-loss checkpoint). Inputs go through
:func:`flare.runtime.core.preprocess.preprocess`, the same function the runtime uses, so an exported
bundle sees the same pixels. A RUN folder holds:

- ``run.json``: the :class:`~flare.runtime.core.runs.ClassifierRun` (settings, classes, macro map, preprocessing)
- ``last.safetensors`` / ``best.safetensors``: weights after the last epoch / at the best
  validation loss; ``train_state.pt``: optimizer, scheduler and epoch for ``--resume``
- ``metrics.jsonl``: one line per epoch; ``split.csv``: the split that was used
- ``confusion_matrix.{png,json}`` and ``results.json``: the test split, at the end
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.core.runs import ClassifierRun, ClassifierTraining, Distillation
from flare.runtime.core.taxonomy import FINE_CLASSES, output_labels
from flare.runtime.foundation.atomic import write_json
from flare.runtime.foundation.errors import FlareError
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import load_rgb
from flare.training.checkpoints import EpochLog
from flare.training.classifiers.metrics import accuracy, confusion_matrix, macro_f1, save_confusion
from flare.training.classifiers.models import create_classifier, load_weights
from flare.training.data.folders import resolve_root, scan_image_folder
from flare.training.data.splits import check_split, read_split, split_groups, write_split
from flare.training.devices import autocast, pick_device
from flare.training.resume import RunFolder, epoch_seed
from flare.training.symmetry import random_dihedral

#: Cache decoded inputs in memory when they fit in this many bytes (demo-size data).
CACHE_LIMIT_BYTES = 2 * 1024**3

#: A training loss: (logits, hard targets, indices of the batch's rows among the training rows) -> scalar.
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: Makes the loss of a run from its training rows (``flare distill`` looks up the teacher's logits by row).
Objective = Callable[[list[dict[str, str]]], Loss]


def hard_labels(rows: list[dict[str, str]]) -> Loss:
    """``flare train``'s objective: cross-entropy with the labels alone."""
    return lambda logits, targets, index: nn.functional.cross_entropy(logits, targets)


class ImageDataset(Dataset):
    """Rows of a split file as (input, target) through the shared preprocessing."""

    def __init__(self, rows: list[dict[str, str]], root: Path, spec: PreprocessSpec,
                 target_of: dict[str, int], cache: bool) -> None:
        self.rows, self.root, self.spec, self.target_of = rows, root, spec, target_of
        self.cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def array(self, i: int) -> np.ndarray:
        """The network input for row ``i``, exactly as the runtime computes it."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        x = preprocess(load_rgb(self.root / self.rows[i]["path"], stretch=self.spec.stretch), self.spec)
        if self.cache is not None:
            self.cache[i] = x
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.array(i)), self.target_of[self.rows[i]["label"]]


class Indexed(Dataset):
    """A dataset's items with their index, so a loss can find what it keeps per row (soft labels)."""

    def __init__(self, base: ImageDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return (*self.base[i], i)


def class_balanced(data: ImageDataset, generator: torch.Generator) -> WeightedRandomSampler:
    """An epoch of draws (with replacement) in which every class is equally likely: with a few
    real photos of one class beside many of another, the common class would otherwise win the
    loss, and balanced accuracy is what a survey's rare classes need."""
    labels = [data.target_of[r["label"]] for r in data.rows]
    counts = np.bincount(labels)
    weights = torch.tensor([1.0 / counts[t] for t in labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)


def build_from_run(run: Path, checkpoint: str = "best") -> tuple[nn.Module, ClassifierRun, Path]:
    """The trained model of a RUN with its config and the weights file used.

    Weights that are damaged, or do not fit the model ``run.json`` describes (another
    backbone or number of classes), are refused in one line naming the file, not with
    torch's list of every differing key.
    """
    from flare.training.checkpoints import load_model_weights

    config = ClassifierRun.load(run)
    weights = Path(run) / f"{checkpoint}.safetensors"
    if not weights.is_file():
        weights = Path(run) / "last.safetensors"
    if not weights.is_file():
        raise FlareError(f"{run} has no checkpoint yet (no best/last.safetensors)")
    model = create_classifier(config.train.model, len(config.classes), config.train.input_size)
    load_model_weights(model, weights, f"the {config.train.model} with {len(config.classes)} classes in "
                       f"{Path(run) / ClassifierRun.FILE}", "re-train with 'flare train'")
    return model.eval(), config, weights


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, n: int, amp: bool) -> dict[str, Any]:
    """Loss, accuracy, macro-F1 and the confusion matrix over a loader."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, trues, preds = 0.0, [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast(device, amp):
            logits = model(x)
        total_loss += float(loss_fn(logits.float(), y))
        trues.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    if not trues:
        return {"loss": float("nan"), "acc": 0.0, "macro_f1": 0.0, "cm": np.zeros((n, n), dtype=np.int64),
                "predictions": np.zeros(0, dtype=np.int64)}
    cm = confusion_matrix(np.concatenate(trues), np.concatenate(preds), n)
    return {"loss": total_loss / max(cm.sum(), 1), "acc": accuracy(cm), "macro_f1": macro_f1(cm), "cm": cm,
            "predictions": np.concatenate(preds)}


def score_run(run: Path, root: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    """A trained run's scores (as :func:`evaluate`: accuracy, macro-F1, confusion matrix over the
    run's classes) on image rows whose paths are relative to ``root``; rows of a fine class the run
    does not know are left out. Experiments and benchmarks score held-out sets with it."""
    model, config, _ = build_from_run(run)
    classes, label_map = config.classes, config.label_map
    rows = [r for r in rows if r["label"] in label_map]
    target_of = {fine: classes.index(label_map[fine]) for fine in label_map}
    ds = ImageDataset(rows, root, config.preprocessing, target_of, cache=False)
    return evaluate(model, DataLoader(ds, batch_size=64), torch.device("cpu"), len(classes), amp=False)


def prepare_split(data: Path, split: Path | None, seed: int) -> list[dict[str, str]]:
    """The given split file, or the default grouped split of ``data``, checked to be trainable.

    A split that leaves images of ``data`` out is allowed (a subset on purpose) but said.
    """
    samples, _ = scan_image_folder(data)
    if split is None:
        rows = split_groups(samples, seed=seed)
        check_split(rows, data)
        return rows
    rows = read_split(split, data)
    check_split(rows, split)
    unused = len({s.path for s in samples} - {r["path"] for r in rows})
    if unused:
        log(f"note: {split} covers {len(rows)} of the {len(samples)} images in {resolve_root(data)}; "
            f"the other {unused} are not used")
    return rows


def run_classes(rows: list[dict[str, str]], level: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The output classes of a run on ``rows`` at ``level`` (fine or macro), their macro map and the
    map from each fine label to its output class: FLARE's order where the labels are its classes."""
    fine_classes = sorted(set(r["label"] for r in rows))
    if all(c in FINE_CLASSES for c in fine_classes):
        fine_classes = [c for c in FINE_CLASSES if c in fine_classes]
    return output_labels(level, fine_classes)


def train(cfg: ClassifierTraining, out: Path, split: Path | None = None, resume: bool = False,
          device: str = "auto", objective: Objective = hard_labels,
          distill: Distillation | None = None) -> dict[str, Any]:
    """Train (or resume) a run in ``out``; returns the final test metrics.

    ``objective`` makes the training loss from the training rows (``flare distill`` passes the
    teacher's soft labels this way) and ``distill`` is recorded in ``run.json`` with it, so one
    loop, one checkpointing and one resume serve both commands.
    """
    out = Path(out)
    run = RunFolder(out, ClassifierRun)
    dev = pick_device(device)
    cfg, state = run.open(cfg, resume, dev)
    if state is not None:
        rows = read_split(out / "split.csv", Path(cfg.data))
    else:
        rows = prepare_split(Path(cfg.data), split, cfg.seed)  # before anything is written
        out.mkdir(parents=True, exist_ok=True)
        write_split(rows, out / "split.csv")
    root = resolve_root(Path(cfg.data))
    classes, macro_of, label_map = run_classes(rows, cfg.level)
    target_of = {fine: classes.index(label_map[fine]) for fine in label_map}
    spec = PreprocessSpec(size=cfg.input_size)
    ClassifierRun(train=cfg, classes=classes, macro_of=macro_of, label_map=label_map, preprocessing=spec,
                  distill=distill).save(out)

    torch.manual_seed(cfg.seed)
    model = create_classifier(cfg.model, len(classes), cfg.input_size).to(dev)
    if cfg.weights and state is None:
        info = load_weights(model, Path(cfg.weights))
        log(f"loaded {cfg.weights}: {info['loaded']} tensors, {info['missing']} new (head)")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    use_scaler = cfg.amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    start, best_loss = 0, float("inf")
    if state is not None:
        start = run.restore(state, model, f"the {cfg.model} with {len(classes)} classes in {out / ClassifierRun.FILE}",
                            {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler})
        best_loss = state["best_val_loss"]
        log(f"resuming {out} at epoch {start + 1}/{cfg.epochs}")

    per_item = 3 * cfg.input_size * cfg.input_size * 4
    cache = len(rows) * per_item < CACHE_LIMIT_BYTES
    sets = {s: ImageDataset([r for r in rows if r["split"] == s], root, spec, target_of, cache) for s in ("train", "val", "test")}
    eval_loader = {s: DataLoader(d, batch_size=cfg.batch, shuffle=False, num_workers=cfg.workers) for s, d in sets.items()}
    loss_fn = objective(sets["train"].rows)
    metrics = EpochLog(out / "metrics.jsonl", keep=start)

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, epoch))  # dropout etc.: the same whether resumed or not
        shuffle = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
        train_ds = sets["train"]
        order = class_balanced(train_ds, shuffle) if cfg.balance else None
        loader = DataLoader(Indexed(train_ds), batch_size=cfg.batch, shuffle=order is None, sampler=order,
                            generator=shuffle, num_workers=cfg.workers, drop_last=len(train_ds) > cfg.batch)
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        with progress_bar(len(train_ds), f"epoch {epoch + 1}/{cfg.epochs}") as advance:
            for x, y, index in loader:
                if cfg.flips:
                    x = random_dihedral(x, shuffle)
                x, y = x.to(dev), y.to(dev)
                optimizer.zero_grad(set_to_none=True)
                with autocast(dev, cfg.amp):
                    logits = model(x)
                    loss = loss_fn(logits.float(), y, index)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                seen += len(y)
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                advance(len(y))
        scheduler.step()
        val = evaluate(model, eval_loader["val"], dev, len(classes), cfg.amp)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
               "val_loss": val["loss"], "val_acc": val["acc"], "val_macro_f1": val["macro_f1"],
               "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)}
        improved = val["loss"] < best_loss or not np.isfinite(best_loss)
        if improved:
            best_loss = val["loss"]
        run.save(model, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "epoch": epoch, "best_val_loss": float(best_loss)}, improved)
        metrics.append(row)
        log(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} macro-F1 {row['val_macro_f1']:.3f}"
            + (" (best)" if improved else ""))

    best, _, _ = build_from_run(out)
    test = evaluate(best.to(dev), eval_loader["test"], dev, len(classes), cfg.amp)
    js, png = save_confusion(test["cm"], classes, out / "confusion_matrix",
                             f"{cfg.model} test split: acc {test['acc']:.3f}, macro-F1 {test['macro_f1']:.3f}")
    results = {"test_acc": test["acc"], "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
               "test_images": int(test["cm"].sum()), "confusion_matrix": js.name, "confusion_png": png.name,
               "device": str(dev)}
    write_json(out / "results.json", results)
    return results
