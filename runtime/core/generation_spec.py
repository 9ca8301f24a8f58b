"""What a ``generate`` bundle needs beyond its model files, and the few array conventions
that training and the runtime must share exactly.

:class:`GenerationSpec` is a generate bundle's ``preprocessing`` section: the latent shape,
the class prompts whose encodings the bundle carries, how a source image conditions the
model, the noise schedule, and the text encoder's tokenisation when there is one.

The shared conventions are one definition each, used by the PyTorch pipeline
(:mod:`flare.training.diffusion.model`) and the runtime's (:mod:`flare.runtime.tasks.generate`), so
the same seed gives the same image in both:

* :func:`initial_noise`: an image's starting latent from its own seed (numpy's PCG64, so no
  torch is needed to reproduce it);
* :func:`source_input`: a source image as the VAE encoder's input (centre square crop,
  bicubic resize, [-1, 1]);
* :func:`to_uint8`: the VAE decoder's output in [-1, 1] as 8-bit pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from flare.runtime.foundation.errors import BundleError

PROMPT_TEMPLATE = "An image of {cls} in space"
#: How a model takes a source image: "channels" (ours: its pooled latent as extra UNet input
#: channels), "img2img" (pipelines: the sampling starts from the noised source latent).
IMAGE_MODES = ("channels", "img2img")


def prompt_for(cls: str) -> str:
    """The authors' class-concatenated prompt."""
    return PROMPT_TEMPLATE.format(cls=cls)


def initial_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The starting latent of the image with this seed: standard normal float32.

    One generator per image, so an image does not depend on the batch it is made in, and a
    single image is regenerated from its seed alone.
    """
    return np.random.default_rng(int(seed)).standard_normal(shape, dtype=np.float32)


def source_input(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> 3 x size x size float32 in [-1, 1]: centre square crop, bicubic resize."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(np.ascontiguousarray(image[top:top + s, left:left + s]))
    if s != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """B x 3 x H x W in [-1, 1] -> B x H x W x 3 uint8 (values outside the range are clipped)."""
    x = (np.clip(images.astype(np.float32), -1.0, 1.0) + np.float32(1.0)) * np.float32(127.5)
    return np.round(x).astype(np.uint8).transpose(0, 2, 3, 1)


@dataclass(frozen=True)
class TextSpec:
    """How prompts become the text encoder's ``input_ids`` (``tokenizer.json`` in the bundle)."""

    max_length: int
    pad_id: int


@dataclass(frozen=True)
class GenerationSpec:
    """How a ``generate`` bundle samples.

    ``classes`` name the rows of ``class_embeddings.npy`` in order; its last row is the null
    prompt that classifier-free guidance steers away from. ``image_mode`` is None when the
    model cannot take a source image. ``scheduler`` is the diffusers-style noise schedule
    (betas, prediction type, timestep spacing) every sampler is built from; ``defaults`` are
    the sampling settings the exporter recommends (the authors': DPM-Solver++ order 3, 50
    steps, guidance 8).
    """

    image_size: int
    latent_channels: int
    latent_size: int
    classes: list[str]
    image_mode: str | None
    scheduler: dict[str, Any]
    text: TextSpec | None = None
    prompt_template: str = PROMPT_TEMPLATE
    defaults: dict[str, Any] = field(default_factory=lambda: {
        "steps": 50, "guidance": 8.0, "sampler": "dpmpp", "order": 3, "strength": 0.75})

    def __post_init__(self) -> None:
        if min(self.image_size, self.latent_channels, self.latent_size) < 1:
            raise BundleError("generate preprocessing needs positive image_size, latent_channels and latent_size")
        if self.image_mode not in (None, *IMAGE_MODES):
            raise BundleError(f"generate preprocessing: unknown image_mode {self.image_mode!r}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.latent_size, self.latent_size)

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (``preprocessing`` in manifest.json)."""
        d = asdict(self)
        d["source_image"] = "centre square crop, bicubic resize to image_size, RGB scaled to [-1, 1]"
        d["output"] = "VAE decoder output in [-1, 1], clipped, to 8-bit RGB"
        d["noise"] = "numpy default_rng(seed).standard_normal(latent_shape, float32), one generator per image"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationSpec:
        """Read the manifest form; refuse a malformed one by what is wrong."""
        try:
            text = d.get("text")
            return cls(image_size=int(d["image_size"]), latent_channels=int(d["latent_channels"]),
                       latent_size=int(d["latent_size"]), classes=[str(c) for c in d["classes"]],
                       image_mode=d.get("image_mode"), scheduler=dict(d["scheduler"]),
                       text=None if text is None else TextSpec(max_length=int(text["max_length"]),
                                                               pad_id=int(text["pad_id"])),
                       prompt_template=str(d.get("prompt_template", PROMPT_TEMPLATE)),
                       defaults=dict(d.get("defaults", {})) or cls.__dataclass_fields__["defaults"].default_factory())
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"preprocessing section of a generate bundle is malformed: {exc}") from exc


#: The sampler-step graph of a generate bundle (``sampler_step.onnx``): one sampler step on the
#: device, so the sampling loop need not bring latents to the host between UNet calls. Inputs:
#: the sample (B images), the UNet's raw output (B, or 2B under guidance: unconditional half
#: first), the step's numbers and the two previous clean-sample predictions (zeros when unused);
#: outputs: the next sample, the next UNet input (the sample repeated as the UNet batch is) and
#: this step's clean-sample prediction.
STEP_INPUTS = ("sample", "noise_pred", "coefficients", "history1", "history2")
STEP_OUTPUTS = ("next_sample", "next_unet_sample", "x0")
#: What ``coefficients`` holds, in order (see :class:`flare.runtime.core.schedulers.LinearStep`):
#: x0 = data_x * x + data_out * out; next = sample * x + output * out + w2 * history2 + w1 * history1 + w0 * x0,
#: with out = uncond + guidance * (cond - uncond).
STEP_COEFFICIENTS = ("data_x", "data_out", "sample", "output", "w2", "w1", "w0", "guidance")


def step_coefficients(step: Any, guidance: float) -> np.ndarray:
    """A :class:`~flare.runtime.core.schedulers.LinearStep` as the graph's ``coefficients`` input."""
    weights = (0.0,) * (3 - len(step.history)) + tuple(step.history)
    return np.array([*step.data, step.sample, step.output, *weights, guidance], dtype=np.float32)
