"""The eight flips and quarter turns of a square image: free augmentation for the sky.

A sky image has no up, down, left or right, so every one of the dihedral group's eight
symmetries gives another valid training image, exactly (no interpolation, no new pixels).
``flare train --flips`` and ``flare train-diffusion`` both draw from it.
"""

from __future__ import annotations

import torch


def dihedral(x: torch.Tensor, codes: torch.Tensor | list[int]) -> torch.Tensor:
    """Rotate each image of a batch by ``code % 4`` quarter turns, mirrored if ``code >= 4``."""
    out = []
    for xi, c in zip(x, [int(c) for c in codes], strict=True):
        xi = torch.rot90(xi, c % 4, dims=(-2, -1))
        out.append(torch.flip(xi, dims=(-1,)) if c >= 4 else xi)
    return torch.stack(out)


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of a batch under one of the eight symmetries, drawn from ``generator``."""
    return dihedral(x, torch.randint(0, 8, (len(x),), generator=generator))
