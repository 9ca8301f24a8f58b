"""Tiled super-resolution in PyTorch: run a model on overlapping tiles and blend the seams.

Transformer SR models need memory that grows with the image area (SwinIR keeps a full feature
map of ``embed_dim`` channels per RSTB, plus per-window attention), so a large photo does not
fit on a small GPU or edge device in one pass. Running overlapping tiles bounds the working
set by the tile size, and blending the overlaps with a smooth ramp hides the seams that a
plain crop-and-paste would leave. Tile placement and blend weights come from
:mod:`flare.runtime.core.tiling`, which the runtime's enhancer uses too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from flare.runtime.core.tiling import Axis
from flare.runtime.foundation.errors import FlareError

__all__ = ["sr_tiled"]


def _model_device(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], fallback: torch.device) -> torch.device:
    """Device of the model's first parameter, or ``fallback`` for parameter-free callables."""
    if isinstance(model, nn.Module):
        for param in model.parameters():
            return param.device
    return fallback


def sr_tiled(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    device: torch.device | str | None = None,
    align: int | None = None,
) -> torch.Tensor:
    """Super-resolve ``image`` ``(1, C, H, W)`` tile by tile; return ``(1, C', H*scale, W*scale)``.

    Args:
        model: maps a ``(1, C, h, w)`` tile to ``(1, C', h*scale, w*scale)``.
        image: low-resolution input (values as the model expects, e.g. [0, 1] for SwinIR).
        scale: the model's upscaling factor; each tile's output is checked against it.
        tile: largest tile side in input pixels; 0 runs the whole image in one call. An image
            no larger than ``tile`` along an axis is one tile along that axis.
        overlap: minimum input pixels shared by neighbouring tiles (``0 <= overlap < tile``);
            seams are blended over ``overlap * scale`` output pixels.
        device: where the model runs (tiles are moved there one at a time); default: the
            device of the model's parameters. The result is returned on ``image``'s device.
        align: tile starts are multiples of this (see :func:`tile_starts`); default: the
            model's ``window_size`` attribute when it has one, else 1.

    Only one tile and its output live on ``device`` at a time; the float32 output buffer
    (full output size) lives on ``image``'s device.

    Accuracy: the blend weights are normalised, and each tile's outermost ``overlap / 4``
    input pixels along interior edges get weight 0. A model whose receptive field reaches at
    most that far (a convolution stack; tiles must start on multiples of ``align``) therefore
    reproduces whole-image inference up to float rounding (tested at 1e-5). A model with wider
    context sees truncated context near interior tile edges, so the result is close to but
    not equal to whole-image inference. Window-aligned tiles keep SwinIR's attention windows
    identical to the whole-image ones, so only that edge effect remains. Measured on the
    untrained ``tiny_x4`` configuration with a random 40x52 image (values on a [0, 1] scale;
    untrained networks are far more context-sensitive than trained ones): tile 16, overlap 4:
    max |difference| < 0.3, mean < 0.02; tile 16, overlap 8: max < 0.08, mean < 0.005.
    Larger overlaps and tiles shrink the difference; use ``overlap >= 8`` for SwinIR.
    """
    if image.dim() != 4:
        raise FlareError(f"sr_tiled expects an image tensor of shape (1, C, H, W), got {tuple(image.shape)}")
    if scale < 1:
        raise FlareError(f"scale must be a positive integer, got {scale}")
    if tile < 0 or overlap < 0 or (tile > 0 and overlap >= tile):
        raise FlareError(f"tile ({tile}) and overlap ({overlap}) must satisfy tile == 0 or 0 <= overlap < tile")
    _, _, height, width = image.shape
    run_device = torch.device(device) if device is not None else _model_device(model, image.device)
    if align is None:
        align = int(getattr(model, "window_size", 1))
    rows = Axis.plan(height, tile, overlap, align, scale)
    cols = Axis.plan(width, tile, overlap, align, scale)

    def run(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        result = model(image[:, :, y0:y1, x0:x1].to(run_device))
        expected = ((y1 - y0) * scale, (x1 - x0) * scale)
        if result.dim() != 4 or tuple(result.shape[2:]) != expected:
            raise FlareError(
                f"the model turned a {x1 - x0}x{y1 - y0} tile into shape {tuple(result.shape)}, "
                f"expected {expected[1]}x{expected[0]} for scale {scale}: is the scale right?"
            )
        return result

    with torch.inference_mode():
        if len(rows) == 1 and len(cols) == 1:
            return run(0, height, 0, width).to(image.device)

        output: torch.Tensor | None = None
        for y0, y1, wy in zip(rows.starts, rows.ends, rows.weights):
            for x0, x1, wx in zip(cols.starts, cols.ends, cols.weights):
                result = run(y0, y1, x0, x1).to(image.device, torch.float32)
                if output is None:
                    output = torch.zeros(
                        result.shape[0], result.shape[1], height * scale, width * scale, device=image.device
                    )
                w2d = torch.from_numpy(wy[:, None] * wx[None, :]).to(image.device)
                output[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += result * w2d
        assert output is not None  # more than one tile was run
        return output
