"""``flare augment stage2``: K diffusion-generated images per source image, resumable.

The model is a ``train-diffusion`` RUN or pipeline folder (PyTorch), or a generate bundle
(``flare export diffusion``), which runs on the torch-free runtime.

Outputs go to ``OUT/<source's folder>/<source stem>__gen<k>.png``: the ``__`` variant suffix
(:data:`flare.training.data.folders.VARIANT_SEP`) makes every generated image belong to its original's
group, so a split never puts a generated twin of a test image in training.

``OUT/stage2.csv`` records each image's provenance (source, class, its own seed, sampler
settings, model); it is a :class:`~flare.runtime.foundation.journal.CsvJournal`, appended and fsynced after
every batch's images are written. A re-run skips every output already listed, never
duplicates a row, and cuts off a last line torn by a kill (that image is made again).
Each image's seed is derived from (seed, source path, k), not from its position, so
resuming, re-ordering or a different batch size gives the same images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.foundation.atomic import save_png
from flare.runtime.foundation.errors import FlareError, ImageDecodeError, UsageError
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.foundation.journal import CsvJournal, check_outputs_exist
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import SUPPORTED_SUFFIXES, load_rgb
from flare.runtime.tasks.generate import Generator
from flare.training.data.folders import Sample, resolve_root, scan_image_folder
from flare.training.data.splits import VARIANT_SEP

MANIFEST = "stage2.csv"
COLUMNS = ["output", "source", "class", "seed", "steps", "guidance", "sampler", "order", "image_variation",
           "model"]


@dataclass
class Stage2Config:
    """Generation settings; the defaults are the authors' (4 per image, 50 steps, guidance 8)."""

    per_image: int = 4
    steps: int = 50
    guidance: float = 8.0
    sampler: str = "dpmpp"
    order: int = 3
    seed: int = 0
    image_variation: bool | None = None
    strength: float = 0.75
    batch: int = 8


def item_seed(seed: int, source: str, k: int) -> int:
    """The seed of output ``k`` of ``source``: stable under resume, order and batching."""
    digest = hashlib.sha256(f"{seed}\0{source}\0{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def output_for(source: str, k: int) -> str:
    """``<folder>/<stem>__gen<k>.png`` for a source path relative to the data root."""
    p = Path(source)
    name = p.name
    suffix = next((s for s in SUPPORTED_SUFFIXES if name.lower().endswith(s)), p.suffix)
    stem = name[:len(name) - len(suffix)] if suffix else name
    return (p.parent / f"{stem}{VARIANT_SEP}gen{k}.png").as_posix()


def augment_stage2(data: Path, diffusion: str | Path, out: Path, cfg: Stage2Config,
                   device: str = "auto") -> dict[str, Any]:
    """Generate ``cfg.per_image`` images per source image of ``data`` into ``out``."""
    from flare.training.diffusion.model import SAMPLERS, load_diffusion, local_folder
    from flare.training.devices import pick_device

    local_folder(diffusion, "--diffusion")  # refuse a hub id or a typo before reading any data
    if cfg.per_image < 1 or cfg.batch < 1 or cfg.steps < 1:
        raise UsageError("--per-image, --batch and --steps must be at least 1")
    if cfg.sampler not in SAMPLERS:
        raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {cfg.sampler!r}")
    root = resolve_root(data)
    out = Path(out)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} is inside the data folder {root}; generated images would become sources "
                         "on the next run. Choose a folder outside it")
    samples, _ = scan_image_folder(data)
    settings = {"DATA": str(root.resolve()), "--diffusion": fingerprint_path(Path(diffusion)), "--steps": cfg.steps,
                "--guidance": float(cfg.guidance), "--sampler": cfg.sampler,
                "--order": cfg.order if cfg.sampler == "dpmpp" else None, "--seed": cfg.seed,
                "--image-variation": cfg.image_variation, "--strength": float(cfg.strength)}
    with CsvJournal(out / MANIFEST, COLUMNS, "write stage 2 into another --out", settings) as journal:
        check_outputs_exist(out, [row[0] for row in journal.rows], journal.path)
        done = {row[0] for row in journal.rows}
        pending = [(s, k) for s in samples for k in range(cfg.per_image) if output_for(s.path, k) not in done]
        if (Path(diffusion) / Manifest.FILE).is_file():  # a generate bundle: the torch-free runtime
            backend = {"auto": "auto", "cpu": "cpu"}.get(device, "cuda")
            with Generator(diffusion, RunnerOptions(backend), batch=cfg.batch) as generator:
                return _generate(samples, pending, generator, diffusion, data, root, out, cfg, journal)
        model = load_diffusion(diffusion, pick_device(device))
        return _generate(samples, pending, model, diffusion, data, root, out, cfg, journal)


def _generate(samples: list[Sample], pending: list[tuple[Sample, int]], model: Any, diffusion: str | Path,
              data: Path, root: Path, out: Path, cfg: Stage2Config, journal: CsvJournal) -> dict[str, Any]:
    """Generate the ``pending`` outputs with ``model`` and record each batch in ``journal``.

    ``model`` is a PyTorch :class:`~flare.training.diffusion.model.LatentDiffusion` or the
    runtime's :class:`~flare.runtime.tasks.generate.Generator`: both take the same ``generate`` call.
    """
    known = model.known_classes
    if known is not None:
        unknown = sorted({s.label for s in samples} - set(known))
        if unknown:
            raise FlareError(f"{diffusion} was trained on classes {known}; {data} also has {unknown}. "
                             "Train it on this data or use a text-prompted pipeline")
    variation = model.supports_image_variation if cfg.image_variation is None else cfg.image_variation
    if variation and not model.supports_image_variation:
        raise UsageError(f"{diffusion} cannot do image variation (no source-image condition); "
                         "pass --no-image-variation")
    model_name = str(Path(diffusion).expanduser().resolve())
    written, failed = 0, dict[str, str]()
    log(f"stage 2: {len(samples)} source images x {cfg.per_image}; {len(samples) * cfg.per_image - len(pending)} "
        f"already done, {len(pending)} to generate ({'image variation' if variation else 'class prompt only'})")
    with progress_bar(len(pending), "generating") as advance:
        for i in range(0, len(pending), cfg.batch):
            chunk, sources = _load_sources(pending[i:i + cfg.batch], root, variation, failed)
            if chunk:
                seeds = [item_seed(cfg.seed, s.path, k) for s, k in chunk]
                images = model.generate([s.label for s, _ in chunk], seeds, steps=cfg.steps,
                                        guidance=cfg.guidance, sampler=cfg.sampler, order=cfg.order,
                                        sources=sources, strength=cfg.strength)
                rows = []
                for img, (s, k), seed in zip(images, chunk, seeds, strict=True):
                    save_png(img, out / output_for(s.path, k))
                    rows.append([output_for(s.path, k), s.path, s.label, str(seed), str(cfg.steps),
                                 str(float(cfg.guidance)), cfg.sampler,
                                 str(cfg.order) if cfg.sampler == "dpmpp" else "", str(int(variation)),
                                 model_name])
                journal.append(rows)  # after the images: a listed output always exists
                written += len(chunk)
            advance(len(pending[i:i + cfg.batch]))
    return {"sources": len(samples), "written": written, "skipped": len(samples) * cfg.per_image - len(pending),
            "errors": sorted(failed.values()), "manifest": str(journal.path), "image_variation": variation}


def _load_sources(chunk: list[tuple[Sample, int]], root: Path, variation: bool,
                  failed: dict[str, str]) -> tuple[list[tuple[Sample, int]], list[np.ndarray] | None]:
    """The chunk's source images (when varying them); unreadable ones go to ``failed``, logged once."""
    if not variation:
        return chunk, None
    cache: dict[str, np.ndarray] = {}
    kept, sources = [], []
    for s, k in chunk:
        if s.path in failed:
            continue
        if s.path not in cache:
            try:
                cache[s.path] = load_rgb(root / s.path)
            except ImageDecodeError as exc:
                failed[s.path] = str(exc)
                log(f"skipping {exc}")
                continue
        kept.append((s, k))
        sources.append(cache[s.path])
    return kept, sources
