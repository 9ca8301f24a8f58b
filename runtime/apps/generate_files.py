"""``flare generate``'s files: one PNG per image, its provenance in the PNG's text chunks.

Image ``j`` of a request has seed ``seed + j`` and is written as ``<name>_seed<seed>.png``,
so any single image is made again alone with ``--seed <its seed> -n 1``. Each PNG carries
``flare:*`` text chunks (what was asked, seed, steps, guidance, sampler, order, strength,
source image, bundle checksum); a re-run skips a file whose chunks match the request and
refuses one made with other settings, so finished work is never lost nor silently mixed.
Files are written atomically.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from flare.runtime.foundation.atomic import write_atomically
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.foundation.progress import Bar
from flare.runtime.tasks.generate import Generator

#: The key prefix of our PNG text chunks.
PREFIX = "flare:"


@dataclass(frozen=True)
class Request:
    """What to generate: ``n`` images of a class (or of a free-text prompt) from ``seed`` on."""

    name: str | None
    prompt: str | None
    n: int
    seed: int
    steps: int
    guidance: float
    sampler: str
    order: int
    strength: float
    source: Path | None = None

    @property
    def label(self) -> str:
        """The file-name stem of this request's images: the class, or ``prompt-<start of prompt>``."""
        text = self.name if self.prompt is None else "prompt-" + self.prompt[:40]
        return re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_") or "image"

    def provenance(self, seed: int, bundle_sha256: str, source_sha256: str = "") -> dict[str, str]:
        """The text chunks of the image with ``seed``; ``source_sha256`` is the source image as it was
        read, so an image made from an earlier version of the file is not taken for this request's."""
        asked = {"prompt": self.prompt} if self.prompt is not None else {"class": str(self.name)}
        if source_sha256:
            asked["source_sha256"] = source_sha256
        return {f"{PREFIX}{k}": str(v) for k, v in {
            **asked, "seed": seed, "steps": self.steps, "guidance": float(self.guidance), "sampler": self.sampler,
            "order": self.order if self.sampler == "dpmpp" else "", "strength": float(self.strength) if self.source else "",
            "source": self.source or "", "bundle_sha256": bundle_sha256}.items()}


@dataclass
class GenerateSummary:
    written: int
    skipped: int
    seconds: float
    backend: str

    def format(self) -> str:
        per = f", {self.seconds / self.written:.2f} s per image" if self.written else ""
        return (f"{self.written} images written, {self.skipped} already there (same settings) in "
                f"{self.seconds:.1f} s{per} on {self.backend}")


def read_provenance(path: Path) -> dict[str, str]:
    """The ``flare:*`` text chunks of a PNG (empty when it has none or cannot be read)."""
    try:
        with Image.open(path) as img:
            img.load()
            return {k: v for k, v in getattr(img, "text", {}).items() if k.startswith(PREFIX)}
    except (OSError, ValueError):
        return {}


def _save(image: np.ndarray, path: Path, chunks: dict[str, str]) -> None:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    write_atomically(path, lambda p: Image.fromarray(image).save(p, format="PNG", pnginfo=info))


#: The largest seed numpy's and torch's generators take.
LARGEST_SEED = 2**32 - 1


def check_request(generator: Generator, request: Request, out: Path) -> None:
    """Refuse, before anything is allocated or sampled, a request this machine cannot finish:
    seeds past the largest, images that cannot fit on the disk of ``out`` (counted uncompressed,
    an upper bound of a PNG), or a batch whose latents and images cannot fit in free memory."""
    last = request.seed + request.n - 1
    if last > LARGEST_SEED:
        raise UsageError(f"-n {request.n} from --seed {request.seed} runs past the largest seed ({LARGEST_SEED}); "
                         f"ask for at most {LARGEST_SEED - request.seed + 1} images")
    side = generator.spec.image_size
    image_bytes = side * side * 3
    folder = next(p for p in (Path(out), *Path(out).absolute().parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if request.n * image_bytes > free:
        raise FlareError(f"-n {request.n} images of {side}x{side} px need up to {request.n * image_bytes / 1e9:.1f} GB "
                         f"and {folder} has {free / 1e9:.1f} GB free; ask for at most {free // image_bytes} images")
    # per image in one batch: float32 decoded pixels, and noise, latents and the guided halves of the UNet's feed
    per_image = 4 * (3 * side * side + 6 * int(np.prod(generator.spec.latent_shape)))
    memory = _free_memory()
    if memory is not None and generator.batch * per_image > memory:
        raise FlareError(f"--batch {generator.batch} needs at least {generator.batch * per_image / 1e9:.1f} GB of memory "
                         f"and {memory / 1e9:.1f} GB is free; use --batch {max(1, memory // per_image)} or less")


def _free_memory() -> int | None:
    """Bytes of physical memory free now (None where the system does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def generate_files(generator: Generator, request: Request, out: Path, source: np.ndarray | None = None,
                   bar: Bar | None = None) -> GenerateSummary:
    """Write the request's images into ``out``; files already made with the same settings are kept."""
    check_request(generator, request, out)
    checksum = generator.fingerprint
    source_sha256 = fingerprint_path(request.source) if request.source is not None else ""
    seeds = [request.seed + j for j in range(request.n)]
    pending = []
    for seed in seeds:
        path = out / f"{request.label}_seed{seed}.png"
        if path.exists():
            have, want = read_provenance(path), request.provenance(seed, checksum, source_sha256)
            if have == want:
                continue
            changed = sorted(k.removeprefix(PREFIX) for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise UsageError(f"{path} exists but was made with other settings ({', '.join(changed)} differ); "
                             "choose another --out or remove it")
        pending.append(seed)
    start = time.perf_counter()
    if bar is not None:
        bar.start(len(pending) * generator.steps_run(request.steps, request.strength, source is not None))
    for i in range(0, len(pending), generator.batch):
        chunk = pending[i:i + generator.batch]
        kwargs: dict[str, Any] = dict(steps=request.steps, guidance=request.guidance, sampler=request.sampler,
                                      order=request.order, strength=request.strength,
                                      sources=None if source is None else [source] * len(chunk),
                                      on_step=bar)
        if request.prompt is not None:
            images = generator.generate([], chunk, prompts=[request.prompt] * len(chunk), **kwargs)
        else:
            images = generator.generate([str(request.name)] * len(chunk), chunk, **kwargs)
        for seed, image in zip(chunk, images, strict=True):
            _save(image, out / f"{request.label}_seed{seed}.png", request.provenance(seed, checksum, source_sha256))
    return GenerateSummary(written=len(pending), skipped=len(seeds) - len(pending),
                           seconds=time.perf_counter() - start, backend=generator.backend)
