"""``flare train-diffusion``: train the stage-2 latent diffusion model on an ImageFolder tree.

Two phases in one epoch count, so ``--resume`` works in either:

1. the VAE (``vae_epochs``): L1 reconstruction plus a small KL term, optionally after a warm-up
   on the most colourful images (``vae_colour_warmup`` batches, see :meth:`_Trainer.colour_warmup`);
   skipped when ``--vae`` gives a local AutoencoderKL to reuse;
2. the UNet (``epochs``): noise (or velocity) prediction MSE on latents, with the class
   prompt and the source-image condition each dropped now and then for classifier-free
   guidance, and an EMA of the weights that sampling uses.

Latents are computed once when phase 2 starts (for all 8 flips/rotations of each image, a
free augmentation for sky images with no up or down) and kept in ``latents.safetensors``:
on a CPU the VAE encoder would otherwise cost more than the UNet step.

Every epoch draws its randomness from a generator seeded by (seed, epoch) and the state is
saved at each epoch's end, so a resumed run continues exactly as an uninterrupted one.
A RUN folder is a diffusers folder: ``unet/``, ``vae/`` (EMA weights, ``save_pretrained``),
``scheduler/`` and ``conditioner/`` (class embeddings), described by ``run.json`` (a
:class:`~flare.runtime.core.runs.DiffusionRun`), so :func:`~flare.training.diffusion.model.load_diffusion`
reads it like a local pipeline. Beside them: ``training/`` (raw weights and optimizer, EMA
and epoch state for ``--resume``), ``latents.safetensors``, ``metrics.jsonl`` and
``samples/`` (a grid per epoch, one row per class).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from flare.runtime.core.artifact import quote_error
from flare.runtime.core.runs import DiffusionRun, DiffusionTraining
from flare.runtime.foundation.atomic import publish_folder, write_atomically
from flare.runtime.foundation.errors import ArtifactError, FlareError, ImageDecodeError, UsageError
from flare.runtime.foundation.progress import log, progress_bar
from flare.runtime.io.images import load_rgb
from flare.training.checkpoints import EpochLog, TrainingState, save_state, save_weights
from flare.training.data.folders import resolve_root, scan_image_folder
from flare.training.devices import pick_device
from flare.training.diffusion.model import (DiffusionConfig, build_model, condition_dropout, get_config,
                                            load_diffusion, local_folder, sample, save_model, to_model_input,
                                            to_uint8)
from flare.training.resume import RunFolder, epoch_seed
from flare.training.symmetry import dihedral, random_dihedral

#: The colour warm-up draws from this share of the images, the most colourful ones.
COLOURFUL_SHARE = 1 / 8

#: Where a RUN keeps what ``--resume`` needs (raw weights and optimizer state), swapped in whole.
TRAINING_STATE = "training"

#: Keep decoded training images in memory below this many bytes (always true for demo data).
CACHE_LIMIT_BYTES = 2 * 1024**3


class ImageSet:
    """The training images at model resolution, decoded once and kept in memory when they fit."""

    def __init__(self, data: Path, size: int) -> None:
        root = resolve_root(data)
        samples, self.classes = scan_image_folder(data)
        self.root, self.size = root, size
        self.cache = len(samples) * 3 * size * size < CACHE_LIMIT_BYTES
        self.paths: list[str] = []
        self.labels: list[int] = []
        arrays: list[torch.Tensor] = []
        with progress_bar(len(samples), "reading images") as advance:
            for s in samples:
                try:
                    x = self._load(s.path)
                except ImageDecodeError as exc:
                    log(f"skipping {exc}")
                    advance(1)
                    continue
                self.paths.append(s.path)
                self.labels.append(self.classes.index(s.label))
                if self.cache:
                    arrays.append(((x + 1) * 127.5).round().to(torch.uint8))
                advance(1)
        if not self.paths:
            raise FlareError(f"no readable training images under {root}")
        self.pixels = torch.stack(arrays) if self.cache else None

    def _load(self, path: str) -> torch.Tensor:
        return to_model_input(load_rgb(self.root / path), self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, idx: list[int]) -> torch.Tensor:
        """Images ``idx`` as B x 3 x S x S in [-1, 1]."""
        if self.pixels is not None:
            return self.pixels[idx].float() / 127.5 - 1.0
        return torch.stack([self._load(self.paths[i]) for i in idx])

    def colourfulness(self) -> torch.Tensor:
        """Each image's mean distance of its pixels from their grey level (0 for a grey image).

        Over all pixels: it only ranks images for the colour warm-up. Judging a VAE's
        reconstructions needs the lit pixels alone (``flare.benchmarks.vae_colour.colour``),
        where the black sky does not dilute the score.
        """
        out = []
        for i in range(0, len(self), 64):
            x = self.batch(list(range(i, min(i + 64, len(self)))))
            out.append((x - x.mean(1, keepdim=True)).abs().mean((1, 2, 3)))
        return torch.cat(out)

    def first_per_class(self, k: int) -> list[list[int]]:
        """Up to ``k`` image indices per class, in class order (for the preview grids)."""
        return [[i for i, y in enumerate(self.labels) if y == c][:k] for c in range(len(self.classes))]


def save_grid(images: np.ndarray, rows: int, labels: list[str], path: Path) -> None:
    """Tile N x H x W x 3 images into ``rows`` rows with a label left of each row."""
    n, h, w, _ = images.shape
    cols = max(1, -(-n // rows))
    pad, margin = 2, 90
    canvas = Image.new("RGB", (margin + cols * (w + pad) + pad, rows * (h + pad) + pad), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas.paste(Image.fromarray(images[i]), (margin + pad + c * (w + pad), pad + r * (h + pad)))
    for r, text in enumerate(labels[:rows]):
        draw.text((4, pad + r * (h + pad) + h // 2 - 6), text, fill=(230, 230, 230))
    write_atomically(path, lambda p: canvas.save(p, format="PNG"))


class _Trainer:
    """State of one run: the model, optimizers, EMA and the cached latents."""

    def __init__(self, cfg: DiffusionTraining, out: Path, resume: bool, device: torch.device) -> None:
        from diffusers import AutoencoderKL, DDPMScheduler
        from diffusers.training_utils import EMAModel

        self.cfg, self.out, self.dev = cfg, out, device
        overrides = {"image_size": cfg.resolution, "prediction_type": cfg.prediction, "image_cond": cfg.image_cond}
        self.dcfg: DiffusionConfig = get_config(cfg.config, **overrides)
        self.images = ImageSet(Path(cfg.data), self.dcfg.image_size)
        self.classes = self.images.classes
        torch.manual_seed(cfg.seed)
        if resume:  # the architecture and conditioner from the run; the raw weights come with the state
            self.model = load_diffusion(out)
            if self.model.cond.classes != self.classes:
                raise FlareError(f"{cfg.data} now has classes {self.classes}, but the run in {out} was trained on "
                                 f"{self.model.cond.classes}; start a new run")
        else:
            vae = None
            if cfg.vae:
                folder = local_folder(cfg.vae, "--vae")
                sub = "vae" if (folder / "model_index.json").is_file() else None
                try:
                    vae = AutoencoderKL.from_pretrained(str(folder), subfolder=sub, local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ArtifactError(f"{folder} is not an AutoencoderKL saved with save_pretrained "
                                        f"({quote_error(exc)}); save it again with save_pretrained") from exc
            self.model = build_model(self.dcfg, self.classes, vae=vae, text_encoder=cfg.text_encoder, source=str(out))
        self.model.to(device)
        self.vae_epochs = 0 if cfg.vae else cfg.vae_epochs
        if not self.vae_epochs:  # no VAE trained here, no warm-up: run.json says what was done
            self.cfg = cfg = replace(cfg, vae_colour_warmup=0)
        self.noise = DDPMScheduler(**self.model.scheduler_config)
        self.vae_opt = torch.optim.Adam(self.model.vae.parameters(), lr=cfg.vae_lr)
        self.denoiser = [*self.model.unet.parameters(), *self.model.cond.parameters()]
        self.opt = torch.optim.AdamW(self.denoiser, lr=cfg.lr, weight_decay=1e-2)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
        self.ema = EMAModel(self.denoiser, decay=cfg.ema_max_decay, use_ema_warmup=True, power=2 / 3)
        self.latents: torch.Tensor | None = None

    # ----------------------------------------------------------------- bookkeeping

    def run_config(self) -> DiffusionRun:
        return DiffusionRun(train=self.cfg, conditioner=self.model.cond.describe(), image_mode=self.model.info.image_mode,
                            image_cond_cells=self.model.image_cond_cells, vae_epochs=self.vae_epochs)

    def save(self, epoch: int, loss: float, seconds: float) -> None:
        """The EMA model in the diffusers layout, then the training state as one folder.

        ``training/`` (raw weights, optimizers, EMA, epoch) is swapped in whole and last, so
        a resume always finds one epoch's complete state. It also keeps the epoch's loss and
        time, so a resume can write the epoch's metrics row if the run stopped before that.
        """
        self.ema.store(self.denoiser)
        self.ema.copy_to(self.denoiser)
        save_model(self.model, self.out)
        self.ema.restore(self.denoiser)
        self.run_config().save(self.out)
        stage = self.out / f"{TRAINING_STATE}.partial"
        save_weights(self.model, stage / "last.safetensors")
        save_state({"epoch": epoch, "loss": loss, "seconds": seconds, "vae_opt": self.vae_opt.state_dict(),
                    "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "ema": self.ema.state_dict()},
                   stage / "train_state.pt")
        publish_folder(stage, self.out / TRAINING_STATE)

    def restore(self, run: RunFolder, state: TrainingState) -> int:
        """Restore the raw weights, optimizers, schedule and EMA of the last saved epoch; the epoch to train next."""
        start = run.restore(state, self.model, f"the model in {self.out / DiffusionRun.FILE}",
                            {"vae_opt": self.vae_opt, "opt": self.opt, "sched": self.sched, "ema": self.ema})
        self.ema.to(self.dev)
        return start

    def finish_epoch(self, metrics: EpochLog, epoch: int, total: int, loss: float, seconds: float) -> dict[str, Any]:
        """What follows a saved epoch: its preview grids (when due) and its metrics row.

        Kept apart from training so a run that stopped here (a full disk while writing the
        final grid) is finished by ``--resume`` without training the epoch again.
        """
        t0 = time.perf_counter()
        if epoch < self.vae_epochs:
            phase, previews = "vae", [self.vae_preview(epoch)]
        else:
            last = epoch == total - 1
            due = (epoch + 1 - self.vae_epochs) % self.cfg.sample_every == 0 or last
            phase, previews = "unet", self.sample_preview(epoch, variations=last) if due else []
        row = {"epoch": epoch + 1, "phase": phase, "loss": loss, "seconds": round(seconds + time.perf_counter() - t0, 2),
               "samples": [p.relative_to(self.out).as_posix() for p in previews]}
        metrics.append(row)
        log(f"epoch {epoch + 1}/{total} ({phase}): loss {loss:.4f} in {row['seconds']:.1f} s"
            + (f"; {row['samples'][0]}" if previews else ""))
        return row

    # ----------------------------------------------------------------- phase 1: VAE

    def vae_step(self, idx: list[int], g: torch.Generator) -> float:
        """One VAE batch of images ``idx``: L1 reconstruction of a posterior sample plus the KL term."""
        vae = self.model.vae.train()
        x = self.images.batch(idx)
        if self.cfg.dihedral:
            x = random_dihedral(x, g)
        x = x.to(self.dev)
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample(generator=g)).sample
        loss = F.l1_loss(recon, x) + self.cfg.kl_weight * post.kl().mean()
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        self.vae_opt.step()
        return loss.item()

    def colour_warmup(self, g: torch.Generator) -> list[int]:
        """Train the VAE on the most colourful images only, for ``vae_colour_warmup`` batches.

        Made for a tiny VAE that reconstructed Stellarium's photos grey after 20 epochs on all
        of them (mostly colourless galaxies). It kept more colour on one grouped split and not
        on another (``benchmarks/vae_colour.py``), so it is off by default. Training the VAE
        longer keeps the colour: after 100 epochs it kept 84% of the held-out photos' colour
        (93% at ``vae_lr`` 2e-4) on a split nobody had looked at, and the diffusion samples
        were in colour at ``vae_lr`` 2e-4 (docs/experiment.md).
        Returns the images it drew from.
        """
        n, bs = len(self.images), self.cfg.vae_batch
        order = torch.argsort(self.images.colourfulness(), descending=True, stable=True)
        pool = order[:max(min(n, bs), round(n * COLOURFUL_SHARE))].tolist()
        losses = []
        with progress_bar(self.cfg.vae_colour_warmup, f"VAE colour warm-up on the {len(pool)} most colourful images") as advance:
            for _ in range(self.cfg.vae_colour_warmup):
                picks = torch.randint(len(pool), (min(bs, len(pool)),), generator=g).tolist()
                losses.append(self.vae_step([pool[i] for i in picks], g))
                advance(1)
        log(f"VAE colour warm-up: {len(losses)} batches, loss {np.mean(losses):.4f}")
        return pool

    def vae_epoch(self, epoch: int, g: torch.Generator, total: int) -> float:
        if epoch == 0 and self.cfg.vae_colour_warmup:
            self.colour_warmup(g)
        n, bs = len(self.images), self.cfg.vae_batch
        perm = torch.randperm(n, generator=g).tolist()
        losses = []
        with progress_bar(n, f"VAE epoch {epoch + 1}/{total}") as advance:
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                losses.append(self.vae_step(idx, g))
                advance(len(idx))
        return float(np.mean(losses))

    @torch.no_grad()
    def vae_preview(self, epoch: int) -> Path:
        """Originals next to their reconstructions, one row per class."""
        self.model.vae.eval()
        rows = self.images.first_per_class(4)
        tiles = []
        for idx in rows:
            x = self.images.batch(idx).to(self.dev)
            recon = self.model.vae.decode(self.model.vae.encode(x).latent_dist.mean).sample
            pairs = [t for a, b in zip(to_uint8(x), to_uint8(recon), strict=True) for t in (a, b)]
            blank = np.zeros_like(pairs[0])
            tiles.extend(pairs + [blank] * (8 - len(pairs)))
        path = self.out / "samples" / f"vae_epoch_{epoch + 1:04d}.png"
        save_grid(np.stack(tiles), len(rows), self.classes, path)
        return path

    # ----------------------------------------------------------------- latents

    @torch.no_grad()
    def prepare_latents(self) -> None:
        """Encode every image (in all flips/rotations) once; fix the latent scale to unit std."""
        from safetensors.torch import load_file, save_file

        path = self.out / "latents.safetensors"
        if path.is_file():
            try:
                stored = load_file(str(path))["latents"]
            except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
                log(f"recomputing {path}: it cannot be read ({quote_error(exc)})")
            else:
                if stored.shape[0] == len(self.images):
                    self.latents = stored
                    self._set_latent_scale()
                    return
        vae = self.model.vae.eval()
        variants = range(8) if self.cfg.dihedral else range(1)
        out = []
        with progress_bar(len(self.images), "encoding latents") as advance:
            for i in range(0, len(self.images), 16):
                idx = list(range(i, min(i + 16, len(self.images))))
                x = self.images.batch(idx)
                per = [vae.encode(dihedral(x, [v] * len(idx)).to(self.dev)).latent_dist.mean.cpu() for v in variants]
                out.append(torch.stack(per, dim=1))
                advance(len(idx))
        self.latents = torch.cat(out)
        self._set_latent_scale()
        latents = self.latents
        write_atomically(path, lambda p: save_file({"latents": latents.contiguous()}, str(p)))

    def _set_latent_scale(self) -> None:
        """Scale latents to unit std, measured on the data (a function of the cached latents)."""
        assert self.latents is not None
        self.model.vae.register_to_config(scaling_factor=float(1.0 / self.latents.std().clamp_min(1e-6)))

    # ----------------------------------------------------------------- phase 2: UNet

    def unet_epoch(self, epoch: int, g: torch.Generator, total: int) -> float:
        assert self.latents is not None
        m, cfg, dcfg = self.model, self.cfg, self.dcfg
        m.unet.train()
        n, bs = len(self.images), cfg.batch
        labels_all = torch.tensor(self.images.labels)
        scale = m.vae.config.scaling_factor
        perm = torch.randperm(n, generator=g).tolist()
        losses = []
        with progress_bar(n, f"UNet epoch {epoch + 1}/{total}") as advance:
            for i in range(0, n, bs):
                idx = torch.tensor(perm[i:i + bs])
                b = len(idx)
                variant = torch.randint(0, self.latents.shape[1], (b,), generator=g)
                x0 = self.latents[idx, variant] * scale
                noise = torch.randn(x0.shape, generator=g)
                t = torch.randint(0, self.noise.config.num_train_timesteps, (b,), generator=g)
                labels, keep = condition_dropout(labels_all[idx], m.cond.null_index, dcfg.cond_drop,
                                                 dcfg.image_drop, g)
                x0, noise, t, labels = x0.to(self.dev), noise.to(self.dev), t.to(self.dev), labels.to(self.dev)
                noisy = self.noise.add_noise(x0, noise, t)
                target = noise if dcfg.prediction_type == "epsilon" else self.noise.get_velocity(x0, noise, t)
                image_cond = m.image_condition(x0, keep.to(self.dev)) if m.info.image_mode == "channels" else None
                pred = m.predict(noisy, t, m.cond(labels), image_cond)
                loss = F.mse_loss(pred.float(), target.float())
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.denoiser, 1.0)
                self.opt.step()
                self.sched.step()
                self.ema.step(self.denoiser)
                losses.append(loss.item())
                advance(b)
        return float(np.mean(losses))

    @torch.no_grad()
    def sample_preview(self, epoch: int, variations: bool) -> list[Path]:
        """A grid of EMA samples, one row per class (and source | variations at the end)."""
        cfg = self.cfg
        self.ema.store(self.denoiser)
        self.ema.copy_to(self.denoiser)
        try:
            imgs = sample(self.model, self.classes, cfg.sample_per_class, steps=cfg.sample_steps,
                          guidance=cfg.sample_guidance, sampler="dpmpp", seed=cfg.seed, order=2, batch=32)
            paths = [self.out / "samples" / f"epoch_{epoch + 1:04d}.png"]
            save_grid(imgs, len(self.classes), self.classes, paths[0])
            if variations and self.model.supports_image_variation:
                firsts = [idx[0] for idx in self.images.first_per_class(1)]
                src = to_uint8(self.images.batch(firsts))
                var = sample(self.model, self.classes, cfg.sample_per_class, steps=cfg.sample_steps,
                             guidance=cfg.sample_guidance, sampler="dpmpp", seed=cfg.seed, order=2, batch=32,
                             source_images=list(src))
                k = cfg.sample_per_class
                tiles = np.concatenate([np.concatenate([src[r:r + 1], var[r * k:(r + 1) * k]]) for r in range(len(src))])
                paths.append(self.out / "samples" / f"epoch_{epoch + 1:04d}_variations.png")
                save_grid(tiles, len(self.classes), self.classes, paths[1])
        finally:
            self.ema.restore(self.denoiser)
            self.model.unet.train()
        return paths


def train_diffusion(cfg: DiffusionTraining, out: Path, resume: bool = False, device: str = "auto") -> dict[str, Any]:
    """Train (or resume) a diffusion run in ``out``; returns a summary of the last epoch."""
    out = Path(out)
    run = RunFolder(out, DiffusionRun, out / TRAINING_STATE)
    dev = pick_device(device)
    cfg, state = run.open(cfg, resume, dev, restart_unstarted=True)
    if state is None:
        if (cfg.sample_every < 1 or cfg.batch < 1 or cfg.vae_batch < 1 or cfg.epochs < 0 or cfg.vae_epochs < 0
                or cfg.vae_colour_warmup < 0):
            raise UsageError("--batch, --vae-batch and --sample-every must be at least 1, epochs and "
                             "--vae-colour-warmup at least 0")
        out.mkdir(parents=True, exist_ok=True)
    tr = _Trainer(cfg, out, state is not None, dev)
    start = tr.restore(run, state) if state is not None else 0
    total = tr.vae_epochs + cfg.epochs
    metrics = EpochLog(out / "metrics.jsonl", keep=start)
    t_start = time.perf_counter()
    if state is not None and not any(r["epoch"] == start for r in metrics.rows):
        log(f"finishing epoch {start} of {out}: it was trained and saved, but its previews and metrics were not written")
        tr.finish_epoch(metrics, start - 1, total, float(state.get("loss", float("nan"))),
                        float(state.get("seconds", 0.0)))
    if state is not None:
        log(f"resuming {out} at epoch {start + 1}/{total}" if start < total else
            f"{out} has trained all {total} epochs; nothing left to do")
    for epoch in range(start, total):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
        if epoch < tr.vae_epochs:
            loss = tr.vae_epoch(epoch, g, total)
        else:
            if tr.latents is None:
                tr.prepare_latents()
            loss = tr.unet_epoch(epoch, g, total)
        seconds = time.perf_counter() - t0
        tr.save(epoch, loss, seconds)
        tr.finish_epoch(metrics, epoch, total, loss, seconds)
    return {"run": str(out), "epochs": total, "last": metrics.rows[-1] if metrics.rows else {},
            "seconds": round(time.perf_counter() - t_start, 1), "device": str(dev)}
