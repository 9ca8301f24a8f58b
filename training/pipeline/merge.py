"""``flare augment merge``: FLARE's weighted merge of the stage-1 and stage-2 pools.

Per class, the real images (stage 1's super-resolved originals) are always kept, plus a
fraction ``alpha`` of the stage-1 augmented pool and ``beta`` of the stage-2 generated pool
(the authors' configuration: 0.5 and 1.0). Two selection rules:

* ``random``: a seeded random draw per class, the authors' baseline.
* ``percentile``: generated samples are ranked by the distance of their feature embedding to
  the centroid of their class's *real* samples, and only those inside a percentile band of
  the real samples' own distances are kept (default: up to the 95th percentile), so
  off-class generations are dropped and each class's feature distribution stays aligned with
  the real data. The band is the "[inferred]" part of the method and stays configurable.

Embeddings come from a trained classifier RUN when given (its penultimate features), else
from a simple, training-free image descriptor (thumbnail, colour histogram, radial profile).
The output is a self-contained ImageFolder tree (hard links where possible, else copies) plus
``merge.csv`` (path, label, group, split, pool, origin, distance), a split file that
``flare train OUT --split OUT/merge.csv`` reads; groups keep every variant with its original.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.foundation.paths import check_apart
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import load_rgb
from flare.training.data.folders import Sample
from flare.training.data.splits import group_of, read_split, split_groups, write_split
from flare.training.pipeline.stage1 import ERROR_KIND

MERGE_COLUMNS = ["path", "label", "group", "split", "pool", "origin", "distance"]


@dataclass
class MergeConfig:
    alpha: float = 0.5
    beta: float = 1.0
    select: str = "percentile"
    band: tuple[float, float] = (0.0, 95.0)
    seed: int = 0


@dataclass
class Candidate:
    path: Path  # absolute path of the image
    rel: str  # path inside the merged tree (<class>/<name>)
    label: str
    pool: str  # original, stage1 or stage2
    origin: str


def read_stage1(folder: Path) -> list[Candidate]:
    manifest = Path(folder) / "stage1.csv"
    if not manifest.is_file():
        raise UsageError(f"{folder} has no stage1.csv; run 'flare augment stage1' first")
    with open(manifest, newline="", encoding="utf-8") as f:
        return [Candidate(Path(folder) / r["output"], r["output"], r["label"],
                          "original" if r["kind"] == "original" else "stage1", r["source"])
                for r in csv.DictReader(f) if r["kind"] != ERROR_KIND]


def read_stage2(folder: Path) -> list[Candidate]:
    manifest = Path(folder) / "stage2.csv"
    if not manifest.is_file():
        raise UsageError(f"{folder} has no stage2.csv; run 'flare augment stage2' first")
    with open(manifest, newline="", encoding="utf-8") as f:
        return [Candidate(Path(folder) / r["output"], r["output"], r["class"], "stage2", r["source"])
                for r in csv.DictReader(f)]


def descriptor(rgb: np.ndarray) -> np.ndarray:
    """A training-free embedding: 16x16 grey thumbnail, 8-bin colour histograms, radial profile.

    Each block is standardised and L2-normalised so none dominates the distance.
    """
    img = Image.fromarray(rgb)
    grey = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float64).ravel()
    small = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64)
    hist = np.concatenate([np.histogram(small[..., c], bins=8, range=(0, 256))[0] for c in range(3)]).astype(np.float64)
    lum = small.mean(axis=2)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.5, xx - 31.5)
    radial = np.array([lum[(r >= a) & (r < a + 4)].mean() for a in range(0, 32, 4)])
    blocks = []
    for b in (grey, hist, radial):
        b = b - b.mean()
        blocks.append(b / (np.linalg.norm(b) + 1e-9))
    return np.concatenate(blocks)


class ClassifierEmbedder:
    """Penultimate features of a trained classifier RUN (same preprocessing as training)."""

    def __init__(self, run: Path) -> None:
        import torch

        from flare.training.classifiers.train import build_from_run

        self.torch = torch
        self.model, config, _ = build_from_run(run)
        self.spec = config.preprocessing

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from flare.runtime.core.preprocess import preprocess

        x = self.torch.from_numpy(preprocess(rgb, self.spec))[None]
        with self.torch.inference_mode():
            if hasattr(self.model, "forward_head"):  # timm models
                feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            else:  # torchvision GoogLeNet: everything but the final layer
                fc, self.model.fc = self.model.fc, self.torch.nn.Identity()
                try:
                    feats = self.model(x)
                finally:
                    self.model.fc = fc
        return feats.flatten().double().numpy()


def percentile_keep(real: np.ndarray, generated: np.ndarray, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Mask of generated embeddings whose centroid distance lies in ``band`` of the real ones'.

    Returns the mask and the generated samples' distances.
    """
    centroid = real.mean(axis=0)
    d_real = np.linalg.norm(real - centroid, axis=1)
    d_gen = np.linalg.norm(generated - centroid, axis=1)
    hi = np.percentile(d_real, band[1])
    lo = np.percentile(d_real, band[0]) if band[0] > 0 else -np.inf  # 0: the most typical always pass
    return (d_gen >= lo) & (d_gen <= hi), d_gen


def _previous_outputs(out: Path) -> set[str]:
    """The files an earlier merge into ``out`` wrote (listed in its merge.csv): the only ones
    this merge may replace or remove."""
    manifest = out / "merge.csv"
    if not manifest.is_file():
        return set()
    with open(manifest, newline="", encoding="utf-8") as f:
        return {row["path"] for row in csv.DictReader(f) if row.get("path")}


def _link(src: Path, dst: Path, ours: bool) -> None:
    """Put ``src`` at ``dst`` as a hard link (a copy across file systems). An existing ``dst``
    is replaced only when an earlier merge wrote it (``ours``); anything else is refused."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if dst.exists() and os.path.samefile(src, dst):
            return
        if not ours:
            raise FlareError(f"{dst} exists and was not written by a merge into {dst.parent}; "
                             f"merge into a new or empty --out")
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def merge(stage1: Path, stage2: Path, out: Path, config: MergeConfig = MergeConfig(),
          split: Path | None = None, embed_run: Path | None = None) -> dict[str, dict[str, int]]:
    """Build the merged training set in ``out``; returns per-class counts by pool."""
    if not (0 <= config.alpha <= 1 and 0 <= config.beta <= 1):
        raise UsageError(f"--alpha {config.alpha} and --beta {config.beta} must be fractions in [0, 1]")
    if config.select not in ("random", "percentile"):
        raise UsageError(f"--select must be random or percentile, not {config.select!r}")
    lo, hi = config.band
    if not 0 <= lo < hi <= 100:
        raise UsageError(f"--band {lo} {hi} must satisfy 0 <= low < high <= 100")
    check_apart((out, "--out"), [(stage1, "--stage1"), (stage2, "--stage2")])
    candidates = read_stage1(stage1) + read_stage2(stage2)
    missing = [c.path for c in candidates if not c.path.is_file()]
    if missing:
        raise UsageError(f"{len(missing)} listed images are missing, e.g. {missing[0]}; re-run the stage that made them")
    by_class: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for c in candidates:
        by_class[c.label][c.pool].append(c)
    rng = np.random.default_rng(config.seed)
    embed = ClassifierEmbedder(embed_run) if embed_run else descriptor
    chosen: list[tuple[Candidate, float | None]] = []
    counts: dict[str, dict[str, int]] = {}
    with progress_bar(len(by_class), f"merge ({config.select})") as advance:
        for label in sorted(by_class):
            pools = by_class[label]
            originals, pool1, pool2 = pools["original"], pools["stage1"], pools["stage2"]
            kept1 = [pool1[i] for i in sorted(rng.choice(len(pool1), round(config.alpha * len(pool1)), replace=False))]
            n2 = round(config.beta * len(pool2))
            distances: dict[int, float] = {}
            if config.select == "percentile" and pool2 and originals:
                real = np.stack([embed(load_rgb(c.path)) for c in originals])
                gen = np.stack([embed(load_rgb(c.path)) for c in pool2])
                mask, d = percentile_keep(real, gen, config.band)
                inside = [i for i in np.argsort(d) if mask[i]]
                picked = inside[:n2]  # the closest in-band samples when beta < 1
                distances = {i: float(d[i]) for i in range(len(pool2))}
            else:
                picked = list(rng.choice(len(pool2), n2, replace=False)) if pool2 else []
            kept2 = [pool2[i] for i in sorted(picked)]
            chosen += [(c, None) for c in originals + kept1]
            chosen += [(pool2[i], distances.get(i)) for i in sorted(picked)]
            counts[label] = {"original": len(originals), "stage1": len(kept1), "stage1_pool": len(pool1),
                             "stage2": len(kept2), "stage2_pool": len(pool2)}
            advance(1)
    out = Path(out)
    rels = [c.rel for c, _ in chosen]
    if len(set(rels)) != len(rels):
        raise UsageError("stage-1 and stage-2 outputs share file names; were both written into the same folder?")
    previous = _previous_outputs(out)
    for c, _ in chosen:
        _link(c.path, out / c.rel, ours=c.rel in previous)
    if split is not None:  # carry the originals' split to every variant of them
        of_group = {r["group"]: r["split"] for r in read_split(split)}
        split_of = {c.rel: of_group.get(group_of(c.origin)) for c, _ in chosen}
        unknown = [rel for rel, s in split_of.items() if s is None]
        if unknown:
            raise UsageError(f"{split} has no split for the original of {unknown[0]}")
    else:
        rows = split_groups([Sample(c.rel, c.label) for c, _ in chosen], seed=config.seed)
        split_of = {r["path"]: r["split"] for r in rows}
    rows = [{"path": c.rel, "label": c.label, "group": group_of(c.rel), "split": split_of[c.rel], "pool": c.pool,
             "origin": c.origin, "distance": "" if d is None else f"{d:.6f}"} for c, d in chosen]
    for rel in previous - set(rels):  # an earlier merge's picks that this one dropped
        (out / rel).unlink(missing_ok=True)
    write_split(rows, out / "merge.csv", MERGE_COLUMNS)  # last and atomic: it marks the merge as done
    total = {k: sum(c[k] for c in counts.values()) for k in ("original", "stage1", "stage2", "stage2_pool")}
    log(f"merged {len(rows)} images into {out}: {total['original']} originals, {total['stage1']} stage-1, "
        f"{total['stage2']} of {total['stage2_pool']} stage-2 ({config.select})")
    return counts
