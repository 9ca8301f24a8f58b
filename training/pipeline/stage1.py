"""``flare augment stage1``: super-resolve every image, then the five standard augmentations.

For each source image: SwinIR (tiled, so large images fit in memory; an ``enhance`` bundle
runs on the torch-free runtime, a checkpoint in PyTorch) upscales it, the result
is resized to ``size`` (512 in the paper) and written with its five augmented copies as
``<class>/<stem>.png`` and ``<class>/<stem>__<augmentation>.png``; the ``__`` suffix keeps the
original's identity, so ``flare data split`` puts all six in one split. ``stage1.csv`` maps
each source to its outputs. The journal is written after an image's outputs, so a re-run
skips finished sources and redoes at most the one that was interrupted. An unreadable source
is logged and recorded as an ``error`` row, and the run goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.foundation.atomic import save_png
from flare.runtime.foundation.errors import ImageDecodeError, UsageError, one_line
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.foundation.journal import CsvJournal, check_outputs_exist
from flare.runtime.foundation.paths import check_apart
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import load_rgb
from flare.runtime.tasks.enhance import Enhancer
from flare.training.data.folders import resolve_root, scan_image_folder
from flare.training.data.splits import VARIANT_SEP
from flare.training.devices import pick_device
from flare.training.pipeline.augment import AUGMENTATIONS, augment_image
from flare.training.sr.tiling import sr_tiled
from flare.training.sr.train import load_sr, to_image, to_tensor

STAGE1_COLUMNS = ["source", "label", "output", "kind", "sr", "size", "seed", "error"]
#: ``kind`` of the row recording a source that could not be read (its ``output`` is empty).
ERROR_KIND = "error"


@dataclass
class Stage1Config:
    size: int = 512
    tile: int = 256
    overlap: int = 32
    seed: int = 0
    augmentations: tuple[str, ...] = AUGMENTATIONS


@contextlib.contextmanager
def open_sr(sr: Path, config: Stage1Config,
            device: str) -> Iterator[tuple[Callable[[np.ndarray], np.ndarray], str]]:
    """``(upscale, name)``: HxWx3 uint8 -> super-resolved HxWx3 uint8, tiled.

    An enhance bundle (``flare export sr``) runs on the torch-free runtime, the fast path; an
    official ``.pth`` or a ``train-sr`` RUN runs in PyTorch on ``device``. Both tile and blend
    the same way (:mod:`flare.runtime.core.tiling`).
    """
    if (Path(sr) / Manifest.FILE).is_file():
        backend = {"auto": "auto", "cpu": "cpu"}.get(device, "cuda")
        with Enhancer(sr, RunnerOptions(backend), tile=config.tile, overlap=config.overlap) as enhancer:
            yield enhancer.enhance_rgb, f"{Path(sr).name} bundle (x{enhancer.scale}, {enhancer.backend})"
        return
    dev = pick_device(device)
    model, sr_config, weights = load_sr(sr)
    model = model.to(dev)

    def run_torch(rgb: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return to_image(sr_tiled(model, to_tensor(rgb), sr_config.scale, config.tile, config.overlap, device=dev))

    yield run_torch, f"{weights.name} (x{sr_config.scale})"


def run_stage1(data: Path, sr_checkpoint: Path | None, out: Path, config: Stage1Config = Stage1Config(),
               device: str = "auto") -> dict[str, int]:
    """Process every image of the ImageFolder ``data`` into ``out``; returns counts."""
    root = resolve_root(Path(data))
    samples, _ = scan_image_folder(root)
    unknown = set(config.augmentations) - set(AUGMENTATIONS)
    if unknown:
        raise UsageError(f"unknown augmentations {sorted(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    out = Path(out)
    check_apart((out, "--out"), [(root, "DATA")])
    settings = {"DATA": str(root.resolve()), "--sr": fingerprint_path(sr_checkpoint) if sr_checkpoint else None,
                "--size": config.size, "--tile": config.tile, "--overlap": config.overlap, "--seed": config.seed,
                "augmentations": list(config.augmentations)}
    written = skipped = failed = 0
    with contextlib.ExitStack() as stack, \
            CsvJournal(out / "stage1.csv", STAGE1_COLUMNS, "write stage 1 into another --out", settings) as journal:
        check_outputs_exist(out, [row[2] for row in journal.rows if row[3] != ERROR_KIND], journal.path)
        done = {row[0] for row in journal.rows}
        todo = [s for s in samples if s.path not in done]
        skipped = len(samples) - len(todo)
        if skipped:
            log(f"resuming: {skipped} of {len(samples)} images already done")
        upscale, sr_name = None, "none"
        if sr_checkpoint is not None and todo:
            upscale, sr_name = stack.enter_context(open_sr(sr_checkpoint, config, device))
        with progress_bar(len(todo), "stage 1") as advance:
            for sample in todo:
                try:
                    rgb = load_rgb(root / sample.path)
                except ImageDecodeError as exc:  # recorded, so a re-run does not stop on it again
                    log(f"skipping {exc}")
                    journal.append([[sample.path, sample.label, "", ERROR_KIND, sr_name, str(config.size),
                                     str(config.seed), one_line(str(exc))]])
                    failed += 1
                    advance(1)
                    continue
                if upscale is not None:
                    rgb = upscale(rgb)
                rel = Path(sample.path)
                stem = rel.name.rsplit(".", 1)[0]
                images = augment_image(Image.fromarray(rgb), config.size, config.seed, sample.path,
                                       config.augmentations)
                rows = []
                for kind, image in images.items():
                    name = f"{stem}.png" if kind == "original" else f"{stem}{VARIANT_SEP}{kind}.png"
                    target = rel.parent / name
                    save_png(image, out / target)
                    rows.append([sample.path, sample.label, target.as_posix(), kind, sr_name,
                                 str(config.size), str(config.seed), ""])
                journal.append(rows)
                written += len(rows)
                advance(1)
    return {"sources": len(samples), "skipped": skipped, "written": written, "unreadable": failed}
