"""FLARE stage 1's five standard augmentations, with the authors' exact parameters.

Every HR image is converted to RGB, resized to ``size`` x ``size`` (Lanczos; 512 in the
paper) and kept, and five augmented copies are made, each resized to ``size`` again:

1. ``hflip``: horizontal flip
2. ``jitter``: colour jitter (brightness 0.6, contrast 0.4, saturation 0.3, hue 0.2)
3. ``hflip_jitter``: horizontal flip, then colour jitter (0.2, 0.7, 0.5, hue (-0.5, 0.5))
4. ``crop``: random resized crop to ``size``, scale (0.75, 0.90)
5. ``perspective``: random perspective (distortion 0.2, p 0.5)

torchvision's transforms draw from torch's global generator, so each image's draws are made
reproducible (and a resumed run identical) by seeding that generator from (seed, image key).
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch
from PIL import Image
from torchvision import transforms as T

AUGMENTATIONS: tuple[str, ...] = ("hflip", "jitter", "hflip_jitter", "crop", "perspective")


def _pipelines(size: int) -> dict[str, Callable[[Image.Image], Image.Image]]:
    resize = T.Resize((size, size), interpolation=T.InterpolationMode.LANCZOS)
    return {
        "hflip": T.Compose([T.RandomHorizontalFlip(p=1.0), resize]),
        "jitter": T.Compose([T.ColorJitter(brightness=0.6, contrast=0.4, saturation=0.3, hue=0.2), resize]),
        "hflip_jitter": T.Compose([T.RandomHorizontalFlip(p=1.0),
                                   T.ColorJitter(brightness=0.2, contrast=0.7, saturation=0.5, hue=(-0.5, 0.5)),
                                   resize]),
        "crop": T.Compose([T.RandomResizedCrop(size, scale=(0.75, 0.90),
                                               interpolation=T.InterpolationMode.LANCZOS), resize]),
        "perspective": T.Compose([T.RandomPerspective(distortion_scale=0.2, p=0.5), resize]),
    }


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """The kept original: RGB, ``size`` x ``size``, Lanczos."""
    return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def image_seed(seed: int, key: str) -> int:
    """A stable 63-bit seed for one image, independent of processing order."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def augment_image(image: Image.Image, size: int, seed: int, key: str,
                  which: tuple[str, ...] = AUGMENTATIONS) -> dict[str, Image.Image]:
    """The resized original (``"original"``) and each augmentation in ``which``, deterministic."""
    base = resize_square(image, size)
    out = {"original": base}
    pipes = _pipelines(size)
    state = torch.random.get_rng_state()
    try:
        for i, name in enumerate(which):
            torch.manual_seed(image_seed(seed, f"{key}/{i}/{name}"))
            out[name] = pipes[name](base)
    finally:
        torch.random.set_rng_state(state)  # leave the caller's generator as it was
    return out
