"""``flare train-sr``: train SwinIR on LR/HR pairs, with PSNR/SSIM validation and resume.

Pairs come from the user's HR images through the same degradation that makes the synthetic
LR data (:func:`flare.training.data.synth.degrade`: blur, downsample, noise, JPEG; drawn anew at
every training draw, fixed once for validation), or from real pairs when the user has them
(``low_res_dir`` holding files with the HR files' relative paths). The validation split is
grouped like classifier splits, so no image is in both. A RUN holds ``run.json`` (an
:class:`~flare.runtime.core.runs.SRRun`: the SwinIR config and the training settings),
``best.safetensors`` (highest validation PSNR), ``last.safetensors``, ``train_state.pt`` and
``metrics.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flare.runtime.core.artifact import identify, quote_error
from flare.runtime.core.runs import SRRun, SRTraining
from flare.runtime.foundation.errors import ArtifactError, FlareError, UsageError
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import list_images, load_rgb
from flare.training.checkpoints import EpochLog, load_model_weights, read_torch_file
from flare.training.data.folders import Sample
from flare.training.data.splits import split_groups
from flare.training.data.synth import degrade
from flare.training.devices import pick_device
from flare.training.resume import RunFolder
from flare.training.sr.metrics import bicubic_upscale, psnr, ssim
from flare.training.symmetry import dihedral
from flare.training.sr.swinir import CONFIGS, SwinIR, SwinIRConfig, load_swinir

#: Configurations of ours (not official SwinIR releases), sized for CPU training.
OWN_CONFIGS = ("tiny_x4", "small_x4")


def uses_bicubic_residual(cfg: SRTraining) -> bool:
    """Whether the model learns a correction on top of bicubic upscaling.

    Small models reach bicubic quality in minutes instead of hours; by default it is on for
    our own small configurations only, so the official ones keep the published architecture.
    """
    return cfg.arch in OWN_CONFIGS if cfg.bicubic_residual is None else cfg.bicubic_residual


class BicubicResidual(nn.Module):
    """``sr(x) + bicubic(x)``: the network only has to learn what bicubic misses."""

    def __init__(self, sr: SwinIR) -> None:
        super().__init__()
        self.sr = sr
        self.scale, self.window_size = sr.scale, sr.window_size
        self._start_at_bicubic()

    @torch.no_grad()
    def _start_at_bicubic(self) -> None:
        """Make the untrained correction exactly zero, so training starts from bicubic quality.

        SwinIR adds its input mean back to whatever its last convolution produces; left at
        random initialisation, the correction starts as that mean plus noise, and a small
        model spends thousands of steps unlearning it (measured on real photos: below bicubic
        after 1500 steps; with this start, above it from the first few hundred).
        """
        sr = self.sr
        last = sr.upsample[0] if sr.upsampler == "pixelshuffledirect" else sr.conv_last
        repeat = last.out_channels // sr.mean.numel()  # pixel shuffle: scale^2 channels per output channel
        last.weight.zero_()
        last.bias.copy_(-sr.mean.flatten().repeat_interleave(repeat) * sr.img_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.sr(x) + up


def arch_config(name: str, scale: int) -> SwinIRConfig:
    """A named SwinIR configuration; its scale must match ``--scale``."""
    if name not in CONFIGS:
        raise UsageError(f"unknown SwinIR configuration {name!r}; choose one of {', '.join(sorted(CONFIGS))}")
    cfg = CONFIGS[name]
    if cfg.scale != scale:
        raise UsageError(f"{name} is a x{cfg.scale} configuration but --scale is {scale}")
    return cfg


def make_pairs(cfg: SRTraining, files: list[str], fresh: bool = False) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """(LR, HR) uint8 pairs, HR cropped so its sides are multiples of the scale.

    Without ``low_res_dir`` each LR twin comes from :func:`degrade`; with ``fresh`` it is left
    as None, for :func:`random_patches` to degrade the image anew at every draw.
    """
    root, s = Path(cfg.data), cfg.scale
    pairs: list[tuple[np.ndarray | None, np.ndarray]] = []
    for i, rel in enumerate(files):
        hr = load_rgb(root / rel)
        hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
        if hr.shape[0] < s * 8 or hr.shape[1] < s * 8:
            raise UsageError(f"{root / rel} is too small for x{s} training (at least {s * 8} px a side)")
        if cfg.low_res_dir:
            lr = load_rgb(Path(cfg.low_res_dir) / rel)
            if lr.shape[0] * s != hr.shape[0] or lr.shape[1] * s != hr.shape[1]:
                raise FlareError(f"{Path(cfg.low_res_dir) / rel} is {lr.shape[1]}x{lr.shape[0]}, "
                                 f"not 1/{s} of its HR image {hr.shape[1]}x{hr.shape[0]}")
        else:
            lr = None if fresh else degrade(hr, np.random.default_rng([cfg.seed, i]), scale=s)
        pairs.append((lr, hr))
    return pairs


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float in [0, 1] (SwinIR's input range)."""
    return torch.tensor(img).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def to_image(t: torch.Tensor) -> np.ndarray:
    return (t.squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def random_patches(pairs: list[tuple[np.ndarray | None, np.ndarray]], batch: int, patch: int, scale: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of aligned LR/HR crops, each under a random one of the 8 flips and quarter turns.

    A pair without an LR twin is degraded afresh from its HR image (the whole image, so the
    JPEG blocks sit where they sit in real data): the model never sees the same noise twice.
    """
    lp = patch // scale
    lrs, hrs = [], []
    for _ in range(batch):
        lr, hr = pairs[int(rng.integers(len(pairs)))]
        if lr is None:
            lr = degrade(hr, rng, scale=scale)
        y = int(rng.integers(0, lr.shape[0] - lp + 1)) if lr.shape[0] > lp else 0
        x = int(rng.integers(0, lr.shape[1] - lp + 1)) if lr.shape[1] > lp else 0
        lcrop, hcrop = lr[y:y + lp, x:x + lp], hr[y * scale:(y + lp) * scale, x * scale:(x + lp) * scale]
        lrs.append(to_tensor(np.ascontiguousarray(lcrop)))
        hrs.append(to_tensor(np.ascontiguousarray(hcrop)))
    codes = [int(c) for c in rng.integers(0, 8, batch)]
    return dihedral(torch.cat(lrs), codes), dihedral(torch.cat(hrs), codes)


@torch.inference_mode()
def evaluate_sr(model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int,
                device: torch.device) -> dict[str, float]:
    """Mean PSNR / SSIM (Y, border = scale) of the model and of bicubic upscaling."""
    model.eval()
    scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
    for lr, hr in pairs:
        sr = to_image(model(to_tensor(lr).to(device)))
        bic = bicubic_upscale(lr, scale)
        scores["psnr"].append(psnr(sr, hr, scale))
        scores["ssim"].append(ssim(sr, hr, scale))
        scores["bicubic_psnr"].append(psnr(bic, hr, scale))
        scores["bicubic_ssim"].append(ssim(bic, hr, scale))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}


def build_sr(config: SwinIRConfig, bicubic_residual: bool) -> nn.Module:
    sr = SwinIR.from_config(config)
    return BicubicResidual(sr) if bicubic_residual else sr


def load_sr(checkpoint: str | Path) -> tuple[nn.Module, SwinIRConfig, Path]:
    """A SwinIR from a ``train-sr`` RUN folder (best weights) or an official ``.pth`` file.

    A damaged file, or weights for another architecture, is one ArtifactError naming the
    file and what to do.
    """
    path = Path(checkpoint)
    if path.is_dir():
        if identify(path) is None:
            raise UsageError(f"{path} is neither a SwinIR .pth file nor a train-sr run (no {SRRun.FILE})")
        run = SRRun.load(path)
        retrain = "re-train with 'flare train-sr'"
        try:
            config = SwinIRConfig.from_dict(run.swinir)
        except FlareError as exc:
            raise ArtifactError(f"{path / SRRun.FILE}: {quote_error(exc)}; {retrain}") from exc
        weights = path / "best.safetensors"
        if not weights.is_file():
            weights = path / "last.safetensors"
        if not weights.is_file():
            raise FlareError(f"{path} has no SR checkpoint yet")
        model = build_sr(config, run.bicubic_residual)
        load_model_weights(model, weights, f"the SwinIR in {path / SRRun.FILE}", retrain)
        return model.eval(), config, weights
    if not path.is_file():
        raise UsageError(f"SR checkpoint {path} does not exist")
    advice = "re-download or re-save the checkpoint (an official SwinIR .pth, or pass a 'flare train-sr' RUN)"
    state = read_torch_file(path, advice)
    if not isinstance(state, Mapping):
        raise ArtifactError(f"{path} holds a {type(state).__name__}, not a SwinIR state dict; {advice}")
    try:  # given the loaded dict, load_swinir calls it "state dict" in its messages
        model, config = load_swinir(state)
    except FlareError as exc:
        raise ArtifactError(f"{path}: {quote_error(exc, limit=300)}; {advice}") from exc
    return model.eval(), config, path


def train_sr(cfg: SRTraining, out: Path, resume: bool = False, device: str = "auto") -> dict[str, Any]:
    """Train (or resume) a SwinIR run in ``out``; returns the final validation scores."""
    out = Path(out)
    run = RunFolder(out, SRRun)
    dev = pick_device(device)
    cfg, state = run.open(cfg, resume, dev)
    arch = arch_config(cfg.arch, cfg.scale)
    if cfg.patch % cfg.scale:
        raise UsageError(f"--patch {cfg.patch} must be a multiple of --scale {cfg.scale}")
    out.mkdir(parents=True, exist_ok=True)
    SRRun(train=cfg, swinir=arch.to_dict(), bicubic_residual=uses_bicubic_residual(cfg)).save(out)
    if not Path(cfg.data).is_dir():
        raise UsageError(f"{cfg.data} is not a folder of images")
    files, _ = list_images(Path(cfg.data))
    if not files:
        raise UsageError(f"{cfg.data} holds no images")
    rows = split_groups([Sample(f, "image") for f in files], val=cfg.val, test=0.0, seed=cfg.seed)
    by_split = {s: [r["path"] for r in rows if r["split"] == s] for s in ("train", "val")}
    if not by_split["train"]:
        raise UsageError(f"{cfg.data} has too few images to train on")
    log(f"making LR/HR pairs for {len(files)} images ({len(by_split['val'])} for validation)")
    train_pairs = make_pairs(cfg, by_split["train"], fresh=True)
    val_pairs = make_pairs(cfg, by_split["val"] or by_split["train"][:4])

    torch.manual_seed(cfg.seed)
    model = build_sr(arch, uses_bicubic_residual(cfg)).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * cfg.steps_per_epoch)
    start, best = 0, -float("inf")
    if state is not None:
        start = run.restore(state, model, f"the SwinIR in {out / SRRun.FILE}",
                            {"optimizer": optimizer, "scheduler": scheduler})
        best = state["best_psnr"]
        log(f"resuming {out} at epoch {start + 1}/{cfg.epochs}")
    metrics = EpochLog(out / "metrics.jsonl", keep=start)
    loss_fn = nn.MSELoss() if cfg.loss == "mse" else nn.L1Loss()
    scores: dict[str, float] = {}
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        model.train()
        total = 0.0
        with progress_bar(cfg.steps_per_epoch, f"SR epoch {epoch + 1}/{cfg.epochs}") as advance:
            for _ in range(cfg.steps_per_epoch):
                lr, hr = random_patches(train_pairs, cfg.batch, cfg.patch, cfg.scale, rng)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(lr.to(dev)), hr.to(dev))
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
                advance(1)
        scores = evaluate_sr(model, val_pairs, cfg.scale, dev)
        row = {"epoch": epoch + 1, cfg.loss: total / cfg.steps_per_epoch, **scores,
               "seconds": round(time.perf_counter() - t0, 2)}
        improved = scores["psnr"] > best
        if improved:
            best = scores["psnr"]
        run.save(model, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                         "best_psnr": float(best)}, improved)
        metrics.append(row)
        log(f"SR epoch {epoch + 1}: {cfg.loss.upper()} {row[cfg.loss]:.4g} | val PSNR {scores['psnr']:.2f} dB "
            f"SSIM {scores['ssim']:.4f} (bicubic {scores['bicubic_psnr']:.2f} dB / {scores['bicubic_ssim']:.4f})")
    return scores
