"""The records of the three training runs, each written as ``run.json`` beside its weights.

:class:`ClassifierRun` (``flare train``), :class:`SRRun` (``flare train-sr``) and
:class:`DiffusionRun` (``flare train-diffusion``). A diffusion run is otherwise a diffusers
folder (``unet/``, ``vae/``, ``scheduler/``), so the loader that reads it also reads a user's
local pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from flare.runtime.core.artifact import Artifact
from flare.runtime.core.preprocess import PreprocessSpec
from flare.runtime.foundation.errors import ArtifactError


@dataclass
class ClassifierTraining:
    """The settings of ``flare train`` (the authors' recipe by default)."""

    model: str
    data: str
    level: str = "fine"
    epochs: int = 50
    batch: int = 64
    lr: float = 2e-5
    step_size: int = 10
    gamma: float = 0.5
    input_size: int = 224
    seed: int = 0
    weights: str | None = None
    amp: bool = True
    workers: int = 0
    #: Show each training image under a random one of its 8 flips / quarter turns (off in the paper's recipe).
    flips: bool = False
    #: Draw training images so every class is seen equally often (off in the paper's recipe).
    balance: bool = False


@dataclass
class Distillation:
    """How ``flare distill`` trained a RUN: its teacher and the loss settings (see docs/distill.md).

    ``teacher_sha256`` is the weights file's sha256 for a RUN teacher, that of ``manifest.json``
    (which holds every model file's sha256) for a bundle; ``scores`` says what the teacher gave:
    ``logits``, or ``log-probabilities`` for a bundle that outputs probabilities. ``data`` is DATA
    (resolved); the images the student learnt from are ``train.data``.
    """

    teacher: str
    teacher_kind: str
    teacher_sha256: str
    scores: str
    temperature: float
    alpha: float
    data: str
    cache: str


@dataclass
class ClassifierRun(Artifact):
    """A ``flare train`` (or ``flare distill``) RUN: settings, output classes and the preprocessing the
    network saw; a distilled run also records its :class:`Distillation`."""

    KIND: ClassVar[str] = "classifier-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "classifier training run"
    MADE_BY: ClassVar[str] = "flare train"

    train: ClassifierTraining
    classes: list[str]
    macro_of: dict[str, str]
    label_map: dict[str, str]
    preprocessing: PreprocessSpec
    distill: Distillation | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.distill is None:  # an ordinary run's run.json stays as it was
            d.pop("distill")
        return d

    def validate(self) -> None:
        missing = [c for c in self.classes if c not in self.macro_of]
        if not self.classes or missing:
            raise ArtifactError(f"classes {self.classes} need a macro class each (missing {missing})")


#: ``flare train-sr``'s pixel losses.
SR_LOSSES = ("l1", "mse")


@dataclass
class SRTraining:
    """The settings of ``flare train-sr``."""

    data: str
    arch: str = "tiny_x4"
    scale: int = 4
    patch: int = 64
    batch: int = 8
    epochs: int = 20
    steps_per_epoch: int = 100
    lr: float = 2e-4
    val: float = 0.1
    seed: int = 0
    low_res_dir: str | None = None
    #: Learn a correction on top of bicubic upscaling; None: on for our own small configurations.
    bicubic_residual: bool | None = None
    #: Pixel loss: "l1" (SwinIR's) or "mse" (what PSNR scores); runs saved before it existed are l1.
    loss: str = "l1"


@dataclass
class SRRun(Artifact):
    """A ``flare train-sr`` RUN. ``swinir`` is the architecture (``SwinIRConfig.to_dict()``)."""

    KIND: ClassVar[str] = "sr-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "super-resolution training run"
    MADE_BY: ClassVar[str] = "flare train-sr"

    train: SRTraining
    swinir: dict[str, Any]
    bicubic_residual: bool

    def validate(self) -> None:
        if self.train.loss not in SR_LOSSES:
            raise ArtifactError(f"unknown SR loss {self.train.loss!r} (known: {', '.join(SR_LOSSES)})")


@dataclass
class DiffusionTraining:
    """The settings of ``flare train-diffusion``."""

    data: str
    config: str = "tiny"
    resolution: int | None = None
    epochs: int = 100
    vae_epochs: int = 10
    batch: int = 32
    vae_batch: int = 16
    lr: float = 5e-4
    vae_lr: float = 1e-3
    #: VAE batches on the most colourful images before its epochs (off: it kept colour on one split, not another).
    vae_colour_warmup: int = 0
    warmup_steps: int = 100
    kl_weight: float = 1e-6
    ema_max_decay: float = 0.9999
    prediction: str = "epsilon"
    image_cond: bool | None = None
    vae: str | None = None
    text_encoder: str | None = None
    dihedral: bool = True
    sample_every: int = 1
    sample_per_class: int = 4
    sample_steps: int = 25
    sample_guidance: float = 4.0
    seed: int = 0


@dataclass
class Conditioner:
    """How class names become the UNet's cross-attention context.

    ``class_embedding``: a learned embedding per class, projected to ``tokens`` vectors of
    ``dim``; ``prompt_table``: frozen text-encoder outputs of the class prompts, ``tokens``
    x ``dim`` each. Either way the weights are ``conditioner/conditioner.safetensors`` and
    the last row is the null prompt of classifier-free guidance.
    """

    kind: str
    classes: list[str]
    prompts: list[str]
    dim: int
    tokens: int


@dataclass
class DiffusionRun(Artifact):
    """A ``flare train-diffusion`` RUN, beside ``unet/``, ``vae/``, ``scheduler/`` and ``conditioner/``.

    ``image_mode`` is ``"channels"`` when the UNet takes a source-image condition (image
    variation) as extra input channels, pooled to ``image_cond_cells`` cells a side.
    """

    KIND: ClassVar[str] = "diffusion-run"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "diffusion training run"
    MADE_BY: ClassVar[str] = "flare train-diffusion"

    train: DiffusionTraining
    conditioner: Conditioner
    image_mode: str | None
    image_cond_cells: int
    vae_epochs: int

    def validate(self) -> None:
        if self.conditioner.kind not in ("class_embedding", "prompt_table"):
            raise ArtifactError(f"unknown conditioner kind {self.conditioner.kind!r}")
        if self.image_mode not in (None, "channels"):
            raise ArtifactError(f"unknown image_mode {self.image_mode!r}")
