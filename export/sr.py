"""``flare export sr``: a SwinIR checkpoint (official ``.pth`` or a ``train-sr`` RUN) to a checked bundle.

One graph serves every image: batch, height and width are dynamic, and the window padding
runs inside it (see :mod:`flare.training.sr.swinir`). The parity gate runs PyTorch fp32 and
ONNX Runtime on crops of real images in the shapes the runtime produces: batches of 1 to 3,
sides that are not multiples of the window, and one full tile. The figure is PSNR plus the
largest absolute difference, on outputs clipped to [0, 1]. A failing bundle is not written.

fp16 keeps fp32 inputs and outputs (the runtime feeds the same arrays) and computes
LayerNorm and the attention softmax in fp32: those are what overflow in half precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from flare.export.parity import ParityReport, judge_images, sample_images
from flare.export.pipeline import BundleSpec, PartSpec, export_bundle, torch_outputs
from flare.export.precision import in_precision
from flare.export.tensorrt import TensorRTOptions
from flare.runtime.core.artifact import identify, sha256
from flare.runtime.core.preprocess import EnhanceSpec
from flare.runtime.core.runs import SRRun
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.paths import check_apart
from flare.runtime.foundation.progress import log
from flare.training.sr.swinir import CONFIGS, SwinIRConfig

INPUT, OUTPUT = "image", "enhanced"
#: Working memory one tile may take at batch 1 when the exporter picks the tile size.
TILE_BUDGET_BYTES = 256 * 1024**2


@dataclass
class SRSource:
    """What is being exported: the network, its SwinIR configuration and provenance."""

    model: nn.Module
    config: SwinIRConfig
    info: dict[str, Any]
    data: Path | None


def resolve_source(checkpoint: Path) -> SRSource:
    """An official SwinIR ``.pth`` or a ``train-sr`` RUN (its best weights and its data folder)."""
    from flare.training.sr.train import load_sr

    model, config, weights = load_sr(checkpoint)
    variant = next((name for name, cfg in CONFIGS.items() if cfg == config), "custom")
    info: dict[str, Any] = {"checkpoint": str(Path(weights).resolve()), "sha256": sha256(weights),
                            "model": f"swinir {variant}"}
    data = None
    if Path(checkpoint).is_dir() and identify(checkpoint) is SRRun:
        run = SRRun.load(checkpoint)
        info.update(run=str(Path(checkpoint).resolve()), bicubic_residual=run.bicubic_residual)
        data = Path(run.train.data)
    return SRSource(model.eval(), config, info, data)


def recommend_tile(config: SwinIRConfig, budget: int = TILE_BUDGET_BYTES) -> tuple[int, int]:
    """Tile side and overlap (input pixels) for tiled inference of this architecture.

    The largest multiple of the window (between 4 windows and 512 px) whose activations fit
    ``budget`` at batch 1. Per pixel the body holds about ``embed_dim * (4 + mlp_ratio)``
    floats (tokens, qkv, MLP hidden) plus one attention row per head; larger tiles waste less
    work on overlaps. The overlap is about an eighth of the tile, in whole windows, at least
    two: enough context that seams vanish on trained models.
    """
    ws = config.window_size
    per_pixel = 4 * (config.embed_dim * (4 + config.mlp_ratio) + max(config.num_heads) * ws * ws)
    side = int(math.sqrt(budget / per_pixel)) // ws * ws
    tile = min(max(side, 4 * ws), 512 // ws * ws)
    overlap = max(2, round(tile / 8 / ws)) * ws
    return tile, min(overlap, tile - ws)


def parity_cases(images: list[np.ndarray], config: SwinIRConfig, tile: int) -> list[np.ndarray]:
    """Float NCHW batches the gate compares on, cut from ``images`` (HxWx3 uint8).

    Shapes as tiled inference meets them: batches of 1, 2 and 3, sides that are not
    multiples of the window (and one below it), and one image of a full tile.
    """
    ws = config.window_size
    shapes = [(1, tile, tile), (2, 3 * ws + 3, 4 * ws + 5), (3, 2 * ws + 1, 5 * ws - 3), (1, ws - 1, 3 * ws + 7)]
    cases, k = [], 0
    for batch, h, w in shapes:
        crops = []
        for _ in range(batch):
            img = images[k % len(images)]
            k += 1
            if img.shape[0] < h or img.shape[1] < w:  # enlarge a small image rather than pad it
                f = max(h / img.shape[0], w / img.shape[1])
                img = np.asarray(Image.fromarray(img).resize((math.ceil(img.shape[1] * f), math.ceil(img.shape[0] * f)),
                                                             Image.Resampling.BICUBIC))
            y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
            crop = img[y:y + h, x:x + w].astype(np.float32) / 255.0
            if config.in_chans == 1:
                crop = crop.mean(axis=2, keepdims=True)
            crops.append(crop.transpose(2, 0, 1))
        cases.append(np.ascontiguousarray(np.stack(crops)))
    return cases


def parity_images(source: SRSource, calib: Path | None, samples: int = 6) -> tuple[list[np.ndarray], str]:
    """Real images from ``--calib`` or the RUN's data; synthetic sky as a last resort (said so)."""
    images, where = sample_images(calib, source.data, samples)
    return images, f"crops of {where}"


def export_sr(checkpoint: Path, out: Path, *, precision: str = "fp32", calib: Path | None = None,
              tile: int | None = None, overlap: int | None = None, tensorrt: TensorRTOptions = TensorRTOptions(),
              allow_parity_failure: bool = False) -> tuple[Path, ParityReport]:
    """Export, check and write the bundle; raises :class:`ParityError` when the gate refuses."""
    if precision not in ("fp32", "fp16"):
        raise UsageError(f"--precision must be fp32 or fp16 for SR, not {precision!r}")
    check_apart((Path(out), "--out"), [(Path(checkpoint), "CHECKPOINT")])
    source = resolve_source(Path(checkpoint))
    cfg = source.config
    rec_tile, rec_overlap = recommend_tile(cfg)
    tile = tile or rec_tile
    if tile % cfg.window_size or tile < 2 * cfg.window_size:
        raise UsageError(f"--tile {tile} must be a multiple of the window ({cfg.window_size}) and at least two windows")
    overlap = min(rec_overlap, tile - cfg.window_size) if overlap is None else overlap
    spec = EnhanceSpec(scale=cfg.scale, window=cfg.window_size, channels=cfg.in_chans, tile=tile, overlap=overlap)
    images, where = parity_images(source, calib)
    cases = [{INPUT: case} for case in parity_cases(images, cfg, tile)]
    log(f"parity reference: PyTorch fp32 on {sum(len(c[INPUT]) for c in cases)} crops ({where})")
    fp32_parts = {"fp32_parts": "inputs, outputs, LayerNorm, attention softmax"} if precision == "fp16" else {}
    part = PartSpec("model", graph=in_precision(source.model, fp32_layernorm=True), inputs=[INPUT], outputs=[OUTPUT],
                    dynamic={INPUT: {0: "batch", 2: "height", 3: "width"}},
                    example=(torch.from_numpy(cases[1][INPUT]),), cases=cases,
                    references=torch_outputs(source.model, cases), judge=judge_images(where), precision=precision,
                    notes=fp32_parts)
    bundle = BundleSpec(
        "enhance", precision, [part], preprocessing=spec.to_dict(), source=source.info,
        extra={"architecture": "swinir", "swinir": cfg.to_dict(),
               "tile_basis": f"largest window multiple with activations under {TILE_BUDGET_BYTES >> 20} MiB "
                             "at batch 1" if tile == rec_tile else "--tile"})
    return export_bundle(bundle, out, tensorrt, allow_parity_failure)
