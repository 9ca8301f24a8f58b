"""FLARE stage 2: a class-prompted latent diffusion model, its samplers, and local pipelines.

The authors generated their stage-2 images with UniDiffuser (image variation, class prompt
"An image of {class} in space", DPM-Solver++ order 3, 50 steps, guidance 8, Stable
Diffusion's scaled-linear betas). No pretrained weights can be downloaded here, so this
module builds the same kind of model from diffusers parts and trains it on the user's data:

* an :class:`~diffusers.AutoencoderKL` maps images to a small latent (the compute saver of
  latent diffusion);
* a :class:`~diffusers.UNet2DConditionModel` denoises latents, cross-attending to the prompt.
  The prompt's only varying part is the class, so without a text encoder on disk the prompt
  is a learned embedding per class (:class:`ClassPromptEmbedding`); with a local CLIP text
  encoder the real prompt encodings are computed once (:class:`PromptTable`);
* one extra "null" prompt, used when the condition is dropped in training, gives
  classifier-free guidance at sampling;
* optional image variation: the source image's latent, pooled to a coarse grid, is
  concatenated to the noisy latent, so a sample keeps the source's rough layout and colour
  but invents new detail (what the authors got from UniDiffuser's image variation).

A user with a pretrained diffusers pipeline saved on disk (``save_pretrained``) can use it
instead: :func:`load_diffusion` recognises its ``model_index.json`` and never downloads.
Everything samples through :func:`sample` / :meth:`LatentDiffusion.generate`, where each
output image has its own seed, so an image does not depend on which batch it was made in.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flare.runtime.core.artifact import quote_error
from flare.runtime.core.generation_spec import initial_noise, prompt_for, source_input
from flare.runtime.core.generation_spec import to_uint8 as _to_uint8
from flare.runtime.core.runs import Conditioner, DiffusionRun
from flare.runtime.foundation.atomic import publish_folder
from flare.runtime.foundation.errors import ArtifactError, FlareError, UsageError

#: The conditioner's weights inside ``conditioner/`` of a RUN.
CONDITIONER_WEIGHTS = "conditioner.safetensors"
SAMPLERS = ("dpmpp", "ddim")
PREDICTIONS = ("epsilon", "v_prediction")
#: Scheduler settings a pipeline's own scheduler config may carry and ours honour.
_SCHEDULER_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                   "prediction_type", "timestep_spacing", "steps_offset")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class DiffusionConfig:
    """Architecture and diffusion settings of a model trained here.

    ``image_cond_cells`` is the side of the grid the source latent is pooled to for image
    variation: coarse enough that the model cannot copy the source, fine enough to keep its
    layout. Betas default to Stable Diffusion's (as the authors used).
    """

    name: str
    image_size: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    vae_groups: int
    vae_mid_attention: bool
    latent_channels: int
    unet_channels: tuple[int, ...]
    unet_attention: tuple[bool, ...]
    unet_layers: int
    unet_groups: int
    attention_heads: int
    cross_attention_dim: int
    cond_tokens: int
    image_cond: bool = True
    image_cond_cells: int = 4
    prediction_type: str = "epsilon"
    cond_drop: float = 0.1
    image_drop: float = 0.3
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"

    @property
    def vae_factor(self) -> int:
        """How many image pixels one latent cell spans (each extra VAE block halves the size)."""
        return 2 ** (len(self.vae_channels) - 1)

    def validate(self) -> None:
        """Refuse settings diffusers would reject later with a less helpful message."""
        if self.image_size % (self.vae_factor * 2 ** (len(self.unet_channels) - 1)):
            raise UsageError(
                f"image size {self.image_size} must be a multiple of "
                f"{self.vae_factor * 2 ** (len(self.unet_channels) - 1)} for the '{self.name}' config "
                "(the VAE and the UNet halve it repeatedly)")
        if len(self.unet_attention) != len(self.unet_channels):
            raise UsageError("unet_attention needs one entry per UNet level")
        if self.prediction_type not in PREDICTIONS:
            raise UsageError(f"prediction must be one of {', '.join(PREDICTIONS)}, not {self.prediction_type!r}")

    def vae_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the :class:`~diffusers.AutoencoderKL`."""
        n = len(self.vae_channels)
        return dict(in_channels=3, out_channels=3, block_out_channels=tuple(self.vae_channels),
                    down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                    layers_per_block=self.vae_layers, latent_channels=self.latent_channels,
                    norm_num_groups=self.vae_groups, sample_size=self.image_size,
                    mid_block_add_attention=self.vae_mid_attention)

    def unet_kwargs(self, latent_channels: int, latent_size: int, cross_attention_dim: int) -> dict[str, Any]:
        """Constructor arguments of the :class:`~diffusers.UNet2DConditionModel`."""
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in self.unet_attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(self.unet_attention))
        return dict(sample_size=latent_size, in_channels=latent_channels * (2 if self.image_cond else 1),
                    out_channels=latent_channels, block_out_channels=tuple(self.unet_channels),
                    down_block_types=down, up_block_types=up, layers_per_block=self.unet_layers,
                    norm_num_groups=self.unet_groups, cross_attention_dim=cross_attention_dim,
                    attention_head_dim=self.attention_heads)

    def scheduler_config(self) -> dict[str, Any]:
        """The noise schedule shared by training and every sampler."""
        return dict(num_train_timesteps=self.num_train_timesteps, beta_start=self.beta_start,
                    beta_end=self.beta_end, beta_schedule=self.beta_schedule,
                    prediction_type=self.prediction_type)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        """Read back :func:`dataclasses.asdict` output (JSON turns tuples into lists)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


#: Named configurations. ``tiny`` trains to class-conditional samples of the synthetic demo
#: data on a 2-core CPU in minutes; ``paper`` is Stable-Diffusion-sized (512 px, 64x64x4
#: latent) for a GPU and real data.
CONFIGS: dict[str, DiffusionConfig] = {
    "tiny": DiffusionConfig(
        name="tiny", image_size=64, vae_channels=(16, 32, 64), vae_layers=1, vae_groups=8,
        vae_mid_attention=False, latent_channels=4, unet_channels=(32, 64, 64),
        unet_attention=(False, True, True), unet_layers=1, unet_groups=8, attention_heads=4,
        cross_attention_dim=64, cond_tokens=4, image_cond_cells=4),
    "paper": DiffusionConfig(
        name="paper", image_size=512, vae_channels=(128, 256, 512, 512), vae_layers=2, vae_groups=32,
        vae_mid_attention=True, latent_channels=4, unet_channels=(320, 640, 1280, 1280),
        unet_attention=(True, True, True, False), unet_layers=2, unet_groups=32, attention_heads=8,
        cross_attention_dim=768, cond_tokens=4, image_cond_cells=8),
}


def get_config(name: str, **overrides: Any) -> DiffusionConfig:
    """A named configuration with some fields replaced (``None`` values are ignored)."""
    if name not in CONFIGS:
        raise UsageError(f"unknown diffusion config {name!r}; choose one of {', '.join(CONFIGS)}")
    cfg = replace(CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    return cfg


def condition_dropout(labels: torch.Tensor, null_index: int, cond_drop: float, image_drop: float,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time dropout for classifier-free guidance.

    Each label becomes the null prompt with probability ``cond_drop``; independently, the
    returned mask keeps each source-image condition with probability ``1 - image_drop``. The
    model thus learns the unconditional prediction that guidance extrapolates away from, and
    to generate both with and without a source image.
    """
    b = len(labels)
    dropped = torch.rand(b, generator=generator) < cond_drop
    keep = torch.rand(b, generator=generator) >= image_drop
    return torch.where(dropped, torch.full_like(labels, null_index), labels), keep


# --------------------------------------------------------------------------------------
# Prompt conditioning
# --------------------------------------------------------------------------------------


class _ClassTable(nn.Module):
    """Shared lookup of class names: index ``len(classes)`` is the null (dropped) prompt.

    Subclasses provide ``forward`` (indices to context) and ``describe`` (for ``run.json``).
    """

    kind = ""

    def __init__(self, classes: Sequence[str]) -> None:
        super().__init__()
        self.classes = list(classes)

    @property
    def null_index(self) -> int:
        return len(self.classes)

    def labels_for(self, names: Sequence[str | None]) -> torch.Tensor:
        """Class indices of ``names``; ``None`` is the null prompt."""
        unknown = sorted({n for n in names if n is not None and n not in self.classes})
        if unknown:
            raise FlareError(f"the diffusion model was trained on classes {self.classes}; "
                             f"it cannot generate {unknown}")
        return torch.tensor([self.null_index if n is None else self.classes.index(n) for n in names])

    def encode(self, names: Sequence[str | None]) -> torch.Tensor:
        """Cross-attention context (B, tokens, dim) for class names."""
        device = next(iter(self.state_dict().values())).device
        return self(self.labels_for(names).to(device))


class ClassPromptEmbedding(_ClassTable):
    """A learned stand-in for the encoded prompt "An image of {class} in space".

    One embedding per class plus the null prompt, projected to ``tokens`` context vectors
    so cross-attention has several keys to choose between (one key would make attention a
    constant).
    """

    kind = "class_embedding"

    def __init__(self, classes: Sequence[str], dim: int, tokens: int) -> None:
        super().__init__(classes)
        self.dim, self.tokens = dim, tokens
        self.embedding = nn.Embedding(len(self.classes) + 1, dim)
        self.proj = nn.Linear(dim, dim * tokens)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embedding(labels)).view(len(labels), self.tokens, self.dim)

    def describe(self) -> Conditioner:
        return Conditioner(kind=self.kind, classes=self.classes, prompts=[prompt_for(c) for c in self.classes],
                           dim=self.dim, tokens=self.tokens)


class PromptTable(_ClassTable):
    """Frozen CLIP encodings of the class prompts (and of "" as the null prompt).

    The prompts are fixed, so the text encoder runs once; the table is stored in the
    checkpoint and sampling or export needs neither transformers nor the encoder.
    """

    kind = "prompt_table"

    def __init__(self, classes: Sequence[str], table: torch.Tensor) -> None:
        super().__init__(classes)
        self.register_buffer("table", table)

    @classmethod
    def from_text_encoder(cls, classes: Sequence[str], folder: str | Path) -> PromptTable:
        """Encode every class prompt with the local CLIP text encoder in ``folder``."""
        encoder = TextPromptEncoder(*load_text_encoder(folder))
        with torch.no_grad():
            table = encoder.encode([*classes, None])
        return cls(classes, table.detach().cpu())

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table[labels]

    def describe(self) -> Conditioner:
        _, tokens, dim = self.table.shape
        return Conditioner(kind=self.kind, classes=self.classes, prompts=[prompt_for(c) for c in self.classes],
                           dim=int(dim), tokens=int(tokens))


class TextPromptEncoder(nn.Module):
    """Any class name through a real tokenizer and text encoder (pretrained pipelines)."""

    def __init__(self, tokenizer: Any, text_encoder: nn.Module) -> None:
        super().__init__()
        self.tokenizer, self.text_encoder = tokenizer, text_encoder

    def encode(self, names: Sequence[str | None]) -> torch.Tensor:
        """Encode ``prompt_for(name)``; ``None`` is the empty prompt, Stable Diffusion's null."""
        prompts = ["" if n is None else prompt_for(n) for n in names]
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(ids.to(device))[0]


def load_text_encoder(folder: str | Path) -> tuple[Any, nn.Module]:
    """A CLIP tokenizer and text encoder from a local folder (or a pipeline folder's parts)."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise FlareError("a CLIP text encoder needs transformers, from the 'train' extra: pip install 'flare-edge[train]' "
                         "(or train without --text-encoder to use learned class embeddings)") from exc
    root = local_folder(folder, "--text-encoder")
    enc_dir = root / "text_encoder" if (root / "text_encoder").is_dir() else root
    tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else root
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        encoder = CLIPTextModel.from_pretrained(str(enc_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{root} does not hold a CLIP tokenizer and text encoder saved with save_pretrained "
                            f"({type(exc).__name__}: {quote_error(exc)}); save them again with save_pretrained") from exc
    return tokenizer, encoder.eval().requires_grad_(False)


def local_folder(path: str | Path, what: str) -> Path:
    """``path`` as an existing local folder; hub ids and missing paths are refused, never fetched."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    if not p.exists() and _HUB_ID.match(str(path)):
        raise UsageError(
            f"{what} {path} is not a folder on this machine. It looks like a Hugging Face hub id, but "
            "FLARE never downloads models: on a machine with access, load it and call "
            "save_pretrained(FOLDER), copy FOLDER here and pass its path")
    raise UsageError(f"{what} {path} does not exist or is not a folder")


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def to_model_input(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> 3 x size x size in [-1, 1], as the runtime prepares a source image."""
    return torch.from_numpy(source_input(image, size))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W in [-1, 1] -> B x H x W x 3 uint8, as the runtime writes images."""
    return _to_uint8(x.detach().float().cpu().numpy())


def make_scheduler(sampler: str, config: dict[str, Any], order: int = 3) -> Any:
    """A fresh diffusers scheduler (they keep per-run state) for ``sampler``.

    ``dpmpp`` is DPM-Solver++ (multistep, ``order`` 1-3; the authors used 3), ``ddim`` is
    deterministic DDIM (eta 0). Both use the model's noise schedule and prediction type.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    kwargs = {k: v for k, v in config.items() if k in _SCHEDULER_KEYS and v is not None}
    if sampler == "dpmpp":
        if order not in (1, 2, 3):
            raise UsageError(f"--order must be 1, 2 or 3 for DPM-Solver++, not {order}")
        return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=order)
    if sampler == "ddim":
        return DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=False)
    raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")


@dataclass
class ModelInfo:
    """What a loaded model is, for provenance and checks."""

    source: str
    kind: str  # "run" or "pipeline"
    image_mode: str | None  # "channels" (ours), "img2img" (pipelines) or None
    classes: list[str] | None  # None: any class name (a text encoder)
    extra: dict[str, Any] = field(default_factory=dict)


class LatentDiffusion(nn.Module):
    """VAE + conditional UNet + prompt conditioner, trained here or taken from a pipeline."""

    def __init__(self, vae: nn.Module, unet: nn.Module, cond: nn.Module, scheduler_config: dict[str, Any],
                 info: ModelInfo, image_cond_cells: int = 4) -> None:
        super().__init__()
        self.vae, self.unet, self.cond = vae, unet, cond
        self.scheduler_config = dict(scheduler_config)
        self.info = info
        self.image_cond_cells = image_cond_cells

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        return self.latent_size * self.vae_factor

    @property
    def supports_image_variation(self) -> bool:
        return self.info.image_mode is not None

    @property
    def known_classes(self) -> list[str] | None:
        """The classes this model can generate; None when a text encoder takes any name."""
        return self.info.classes

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (the posterior mean: deterministic)."""
        mean = self.vae.encode(images.to(self.device)).latent_dist.mean
        return mean * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1]."""
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample

    def image_condition(self, latents: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The source latent pooled to a coarse grid and stretched back; zero where not ``keep``.

        Zero is also the "no source image" condition the model learns from dropped samples.
        """
        cells = self.image_cond_cells
        pooled = F.adaptive_avg_pool2d(latents, cells)
        cond = F.interpolate(pooled, size=latents.shape[-2:], mode="bilinear", align_corners=False)
        if keep is not None:
            cond = cond * keep.to(cond.dtype).view(-1, 1, 1, 1)
        return cond

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                image_cond: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's noise (or velocity) prediction; ``image_cond`` only for our channel mode."""
        x = noisy if self.info.image_mode != "channels" else torch.cat(
            [noisy, image_cond if image_cond is not None else torch.zeros_like(noisy)], dim=1)
        return self.unet(x, t, encoder_hidden_states=context).sample

    @torch.no_grad()
    def generate(self, names: Sequence[str], seeds: Sequence[int], *, steps: int = 50, guidance: float = 8.0,
                 sampler: str = "dpmpp", order: int = 3, sources: Sequence[np.ndarray] | None = None,
                 strength: float = 0.75) -> np.ndarray:
        """One image per (class name, seed[, source image]) as N x H x W x 3 uint8.

        Each image's starting noise comes from its own seed, so it is the same whatever batch
        it is made in. ``strength`` is how far img2img pipelines re-noise the source (our
        own image-variation models start from pure noise and see the source as a condition).
        """
        if len(names) != len(seeds) or (sources is not None and len(sources) != len(names)):
            raise UsageError("generate needs one seed (and one source image, if any) per class name")
        if sources is not None and not self.supports_image_variation:
            raise UsageError(f"{self.info.source} cannot do image variation (it was trained without a "
                             "source-image condition); use --no-image-variation")
        if steps < 1:
            raise UsageError(f"--steps must be at least 1, not {steps}")
        self.eval()
        dev, n = self.device, len(names)
        shape = (self.latent_channels, self.latent_size, self.latent_size)
        noise = torch.from_numpy(np.stack([initial_noise(s, shape) for s in seeds])).to(dev, self.unet.dtype)
        scheduler = make_scheduler(sampler, self.scheduler_config, order)
        scheduler.set_timesteps(steps, device=dev)
        timesteps = scheduler.timesteps
        guided = guidance != 1.0
        context = self.cond.encode(list(names)).to(dev, self.unet.dtype)
        null = self.cond.encode([None] * n).to(dev, self.unet.dtype) if guided else context
        image_cond = None
        if sources is not None:
            src = torch.stack([to_model_input(s, self.image_size) for s in sources]).to(dev, self.vae.dtype)
            src_latents = self.encode(src)
        if sources is not None and self.info.image_mode == "img2img":
            if not 0.0 < strength <= 1.0:
                raise UsageError(f"--strength must be in (0, 1], not {strength}")
            start = max(0, steps - max(1, round(steps * strength)))
            timesteps = timesteps[start * scheduler.order:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start * scheduler.order)
            latents = scheduler.add_noise(src_latents, noise, timesteps[:1].repeat(n))
        else:
            latents = noise * scheduler.init_noise_sigma
            if sources is not None:
                image_cond = self.image_condition(src_latents)
        for t in timesteps:
            x = scheduler.scale_model_input(latents, t)
            if guided:  # the unconditional branch drops the prompt and the source, as training did
                ic = None if image_cond is None else torch.cat([torch.zeros_like(image_cond), image_cond])
                out = self.predict(torch.cat([x, x]), t.expand(2 * n), torch.cat([null, context]), ic)
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            else:
                out = self.predict(x, t.expand(n), context, image_cond)
            latents = scheduler.step(out, t, latents).prev_sample
        return to_uint8(self.decode(latents.to(self.vae.dtype)))


def sample(model: LatentDiffusion, classes: list[str], n: int = 1, steps: int = 50, guidance: float = 8.0,
           sampler: str = "dpmpp", seed: int = 0, source_images: Sequence[np.ndarray] | None = None, *,
           order: int = 3, strength: float = 0.75, batch: int = 16) -> np.ndarray:
    """``n`` images for each entry of ``classes`` (class-major), as N x H x W x 3 uint8.

    Image ``j`` of the output starts from seed ``seed + j``, so the result is the same for a
    seed whatever ``batch`` is. ``source_images`` (one per entry of ``classes``) turns on
    image variation.
    """
    if source_images is not None and len(source_images) != len(classes):
        raise UsageError("give one source image per class entry")
    names = [c for c in classes for _ in range(n)]
    sources = None if source_images is None else [s for s in source_images for _ in range(n)]
    seeds = [seed + j for j in range(len(names))]
    out = []
    for i in range(0, len(names), batch):
        out.append(model.generate(names[i:i + batch], seeds[i:i + batch], steps=steps, guidance=guidance,
                                  sampler=sampler, order=order, strength=strength,
                                  sources=None if sources is None else sources[i:i + batch]))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


# --------------------------------------------------------------------------------------
# Building, saving and loading
# --------------------------------------------------------------------------------------


#: Log-variance the posterior of a new VAE starts at (standard deviation 0.05).
INITIAL_LOG_VARIANCE = -6.0


@torch.no_grad()
def new_vae(vae: nn.Module) -> nn.Module:
    """A freshly built VAE whose posterior starts narrow in every latent channel.

    Left at diffusers' initialisation the posterior starts with standard deviation about 1
    while the channel means spread by less; the decoder learns to ignore the channels that
    are mostly sampling noise, their variance then gets no gradient, and they stay noise. On
    the Stellarium photos three of the tiny config's four channels did (posterior std 0.8
    against 0.07 in the fourth). Starting narrow, every channel carries the image from the
    first step (measured: posterior std 0.1 in all four after training); the small KL term
    widens the posterior only where the reconstruction allows it.
    """
    c = int(vae.config.latent_channels)
    vae.quant_conv.weight[c:].zero_()
    vae.quant_conv.bias[c:].fill_(INITIAL_LOG_VARIANCE)
    return vae


def build_model(config: DiffusionConfig, classes: Sequence[str], *, vae: nn.Module | None = None,
                text_encoder: str | Path | None = None, source: str = "") -> LatentDiffusion:
    """A freshly initialised model for ``classes`` (optionally around a given VAE / CLIP encoder)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if vae is None:
        vae = new_vae(AutoencoderKL(**config.vae_kwargs()))
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    multiple = vae_factor * 2 ** (len(config.unet_channels) - 1)
    if config.image_size % multiple:
        raise UsageError(f"image size {config.image_size} must be a multiple of {multiple} for this VAE and UNet "
                         "(each halves it repeatedly); pass another --image-size")
    cond: _ClassTable
    if text_encoder is not None:
        cond = PromptTable.from_text_encoder(classes, text_encoder)
        context_dim = int(cond.table.shape[-1])
    else:
        cond = ClassPromptEmbedding(classes, config.cross_attention_dim, config.cond_tokens)
        context_dim = config.cross_attention_dim
    unet = UNet2DConditionModel(**config.unet_kwargs(int(vae.config.latent_channels),
                                                     config.image_size // vae_factor, context_dim))
    info = ModelInfo(source=source, kind="run", image_mode="channels" if config.image_cond else None,
                     classes=list(classes))
    return LatentDiffusion(vae, unet, cond, config.scheduler_config(), info, config.image_cond_cells)


def save_model(model: LatentDiffusion, folder: Path) -> None:
    """The sampling parts of ``model`` in the diffusers folder layout, each folder swapped in whole.

    ``unet/`` and ``vae/`` (``save_pretrained``), ``scheduler/`` (the noise schedule, as a
    diffusers scheduler config) and ``conditioner/`` (our class embeddings or prompt table).
    The run's own ``run.json`` is written by the trainer.
    """
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file

    folder = Path(folder)
    parts = {
        "unet": lambda d: model.unet.save_pretrained(str(d)),
        "vae": lambda d: model.vae.save_pretrained(str(d)),
        "scheduler": lambda d: DDPMScheduler(**_schedule_kwargs(model.scheduler_config)).save_pretrained(str(d)),
        "conditioner": lambda d: save_file({k: v.detach().cpu().contiguous() for k, v in model.cond.state_dict().items()},
                                           str(d / CONDITIONER_WEIGHTS)),
    }
    for name, write in parts.items():
        stage = folder / f"{name}.partial"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        write(stage)
        publish_folder(stage, folder / name)


def _schedule_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k in _SCHEDULER_KEYS and v is not None}


def _load_part(cls: Any, folder: Path, name: str, remedy: str) -> Any:
    """``folder/name`` as a diffusers model, from local files only; ArtifactError if it cannot be used.

    diffusers raises OSError, ValueError, RuntimeError or TypeError for a damaged folder, with
    messages of many lines, and loads a weights file of another model with only a warning,
    leaving the model random; both end here in one line naming the folder.
    """
    where = folder / name
    _read_config(where / "config.json", remedy)  # diffusers' own message for a damaged one misleads
    try:
        model, info = cls.from_pretrained(str(where), local_files_only=True, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - every failure here means the same to the user
        raise ArtifactError(f"cannot load {where} as a {cls.__name__} ({quote_error(exc)}); the folder is damaged "
                            f"or incomplete: {remedy}") from exc
    missing = sorted(info["missing_keys"])  # tensors of another shape raise above
    if missing:
        raise ArtifactError(f"{where}: its weights file lacks {len(missing)} of the tensors its config.json describes "
                            f"(e.g. {missing[0]}), so it holds weights of another model: {remedy}")
    return model


def _read_config(path: Path, remedy: str) -> dict[str, Any]:
    """A JSON object from a diffusers folder; ArtifactError naming the file if it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"cannot read {path} ({quote_error(exc)}); {remedy}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object, not a {type(data).__name__}; {remedy}")
    return data


def load_diffusion(path: str | Path, device: str | torch.device = "cpu") -> LatentDiffusion:
    """A ``train-diffusion`` RUN or a local Stable-Diffusion-shaped pipeline folder, on ``device``.

    Both are diffusers folders and load the same way: ``unet/``, ``vae/`` and ``scheduler/``;
    the prompt conditioning comes from our ``conditioner/`` (a RUN, described by its
    ``run.json``) or from the pipeline's ``text_encoder/`` and ``tokenizer/``. Nothing is ever
    downloaded: a hub id is refused with a message saying how to bring the model here.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = local_folder(path, "--diffusion")
    is_run = (folder / DiffusionRun.FILE).is_file()
    if not is_run and not (folder / "model_index.json").is_file():
        raise UsageError(f"{folder} is neither a diffusion RUN ({DiffusionRun.FILE} from 'flare train-diffusion') "
                         "nor a diffusers pipeline folder (model_index.json from save_pretrained)")
    run = DiffusionRun.load(folder) if is_run else None
    remedy = ("re-train it with 'flare train-diffusion'" if run is not None else
              "save the pipeline again with save_pretrained")
    missing = [p for p in ("unet", "vae", "scheduler") if not (folder / p).is_dir()]
    if run is None:
        missing += [p for p in ("text_encoder", "tokenizer") if not (folder / p).is_dir()]
    if missing:
        raise ArtifactError(f"{folder} lacks {', '.join(missing)}: FLARE runs Stable-Diffusion-shaped models "
                            "(UNet, VAE, scheduler and a CLIP text encoder); other pipelines are not supported")
    unet = _load_part(UNet2DConditionModel, folder, "unet", remedy)
    vae = _load_part(AutoencoderKL, folder, "vae", remedy)
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_config(scheduler_path, remedy)
    try:  # sampling builds its schedulers from this config: refuse a broken one now, by name
        make_scheduler("ddim", scheduler)
    except Exception as exc:  # noqa: BLE001 - diffusers raises TypeError, ValueError, NotImplementedError...
        raise ArtifactError(f"{scheduler_path} is not a usable noise schedule ({quote_error(exc)}); {remedy}") from exc
    if run is not None:
        cond = _load_conditioner(folder, run, remedy)
        info = ModelInfo(source=str(folder), kind="run", image_mode=run.image_mode, classes=list(cond.classes))
        cells = run.image_cond_cells
    else:
        if unet.config.in_channels != vae.config.latent_channels:
            raise FlareError(f"{folder}: the UNet takes {unet.config.in_channels} channels but the VAE makes "
                             f"{vae.config.latent_channels}; only text-to-image pipelines are supported")
        cond = TextPromptEncoder(*load_text_encoder(folder))
        info = ModelInfo(source=str(folder), kind="pipeline", image_mode="img2img", classes=None,
                         extra={"pipeline": _pipeline_name(folder)})
        cells = 4
    model = LatentDiffusion(vae, unet, cond, scheduler, info, cells)
    return model.to(torch.device(device)).eval()


def _load_conditioner(folder: Path, run: DiffusionRun, remedy: str) -> _ClassTable:
    from safetensors.torch import load_file

    spec = run.conditioner
    cond: _ClassTable
    if spec.kind == PromptTable.kind:
        cond = PromptTable(spec.classes, torch.zeros(len(spec.classes) + 1, spec.tokens, spec.dim))
    else:
        cond = ClassPromptEmbedding(spec.classes, spec.dim, spec.tokens)
    path = folder / "conditioner" / CONDITIONER_WEIGHTS
    try:
        cond.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - missing, damaged or mismatched: the same advice
        raise ArtifactError(f"cannot load the class conditioning {path} ({quote_error(exc)}); {remedy}") from exc
    return cond


def _pipeline_name(folder: Path) -> str:
    try:
        return str(json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError):
        return ""
