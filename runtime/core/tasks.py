"""The task registry: the one place that says what each bundle task (``classify``, ``enhance``,
``generate``) means, looked up by the manifest's ``task``.

An entry declares what the core needs directly (how its manifest is checked, the model
files it holds, the rule for its engines' optimisation profiles) and names, as
``module:attribute`` references resolved only when asked, what lives in the layers above:
the runtime model class (which also gives ``flare info`` its lines), the Triton writer
(:mod:`flare.export.triton`) and the bench (:mod:`flare.benchmarks`). The references keep
this module free of those layers (the runtime imports no export code), and a test resolves
every one of them. Adding a task is adding one entry here and the modules it names; nothing
else compares task names.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flare.runtime.core.artifact import quote_error
from flare.runtime.core.generation_spec import GenerationSpec
from flare.runtime.core.preprocess import EnhanceSpec, PreprocessSpec
from flare.runtime.core.schedulers import make_sampler
from flare.runtime.foundation.errors import BundleError, UsageError

if TYPE_CHECKING:
    from flare.runtime.core.manifest import Manifest

#: The model files of a generate bundle: the first two always, the encoders when the source has
#: them, the sampler-step graph in bundles made since it exists (see generation_spec.STEP_INPUTS).
GENERATE_MODELS = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "sampler_step")


@dataclass(frozen=True)
class EngineRule:
    """How a task's TensorRT profiles are shaped (see :func:`flare.runtime.core.engines.engine_profile`).

    ``max_batch`` is the images per call an engine accepts unless ``--max-batch`` says
    otherwise; ``guided_parts`` see twice that (classifier-free guidance runs the
    unconditional and conditional halves together); ``tune_at_max`` tunes the profile at
    the largest batch (throughput tasks fill their batches) rather than at one image;
    ``tiled`` gives the spatial axes a range (an enhance model takes any tile).
    """

    max_batch: int
    guided_parts: tuple[str, ...] = ()
    tune_at_max: bool = True
    tiled: bool = False

    def part_batch(self, part: str, max_batch: int | None = None) -> int:
        """The largest batch ``part`` gets when calls carry ``max_batch`` images (default: the task's)."""
        images = max_batch or self.max_batch
        return 2 * images if part in self.guided_parts else images

    def tuned_batch(self, part: str, max_batch: int | None = None) -> int:
        """The batch the profile is tuned for: the largest, or one image (two halves when guided)."""
        return self.part_batch(part, max_batch) if self.tune_at_max else self.part_batch(part, 1)


@dataclass(frozen=True)
class Task:
    """One bundle task: what it is called, how its manifest is checked, and where its parts live."""

    name: str
    #: What a bundle of this task is, for "X is a bundle for 'enhance', not <what>".
    what: str
    #: The command that makes one.
    made_by: str
    #: The model files this task's bundles may hold, the first being the one ``flare info`` opens.
    parts: tuple[str, ...]
    #: Task-specific consistency checks of a manifest, run when it is read (raise :class:`BundleError`).
    check: Callable[[Manifest], None]
    #: Checks of the manifest's inputs and outputs against its preprocessing and labels, run once the
    #: runner has confirmed they are the model's own (so a disagreement is blamed on the right field).
    check_io: Callable[[Manifest], None]
    engine: EngineRule
    #: The artefact kind of the training RUN that exports to this task (see :mod:`flare.runtime.core.runs`).
    run: str
    #: Whether a local diffusers pipeline folder is a source of this task.
    pipeline: bool
    #: ``module:Class`` of the runtime model (a :class:`flare.runtime.tasks.model.BundleModel`).
    model: str
    #: ``module:function`` writing the task's Triton models (see :mod:`flare.export.triton`).
    triton: str
    #: ``module:function`` running ``flare bench`` for a source of this task.
    bench: str

    @property
    def per_part_precision(self) -> bool:
        """Whether the parts may differ in precision (a generate bundle's VAE decoder may stay fp32)."""
        return len(self.parts) > 1

    def model_class(self) -> Any:
        return resolve(self.model)

    def triton_writer(self) -> Callable[..., None]:
        return resolve(self.triton)

    def bench_function(self) -> Callable[..., Any]:
        return resolve(self.bench)


def resolve(reference: str) -> Any:
    """The object a ``module:attribute`` reference names (imported on first use)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


# --- per-task manifest checks ----------------------------------------------------------------


def _check_classify(manifest: Manifest) -> None:
    if manifest.labels is None:
        raise BundleError("a classify bundle needs 'labels' in its manifest")
    spec = PreprocessSpec.from_dict(manifest.preprocessing)  # the runtime rebuilds its preprocessing from this
    first = manifest.inputs[0]
    wanted = "uint8" if spec.fused else "float32"
    if first.dtype != wanted:
        raise BundleError(f"the preprocessing feeds {wanted} but the model input '{first.name}' is {first.dtype}")


def _check_classify_io(manifest: Manifest) -> None:
    spec = PreprocessSpec.from_dict(manifest.preprocessing)
    first = manifest.inputs[0]
    shape = [1, spec.size, spec.size, 3] if spec.fused else [1, 3, spec.size, spec.size]
    if len(first.shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(first.shape[1:], shape[1:])):
        raise BundleError(f"the preprocessing makes {spec.size} px images ({'NHWC' if spec.fused else 'NCHW'}) but the "
                          f"model input '{first.name}' is {first.shape}")
    classes = manifest.outputs[0].shape[-1] if manifest.outputs[0].shape else None
    if isinstance(classes, int) and classes != len(manifest.labels.classes):
        raise BundleError(f"the model output '{manifest.outputs[0].name}' has {classes} classes but labels.classes "
                          f"names {len(manifest.labels.classes)}")


def _no_check(manifest: Manifest) -> None:
    """Nothing beyond what the runner compares with the model."""


def _check_enhance(manifest: Manifest) -> None:
    enhance = EnhanceSpec.from_dict(manifest.preprocessing)
    first = manifest.inputs[0]
    if first.dtype != "float32" or len(first.shape) != 4 or first.shape[1] != enhance.channels:
        raise BundleError(f"the preprocessing feeds float32 (batch, {enhance.channels}, height, width) but "
                          f"the model input '{first.name}' is {first.dtype} {first.shape}")


def _check_generate(manifest: Manifest) -> None:
    spec = GenerationSpec.from_dict(manifest.preprocessing)
    missing = [k for k in ("unet", "vae_decoder", "class_embeddings") if k not in manifest.files]
    if missing:
        raise BundleError(f"a generate bundle needs the files {', '.join(missing)} in its manifest")
    unknown = sorted(set(manifest.models) - set(GENERATE_MODELS))
    if unknown or any(k not in manifest.models for k in GENERATE_MODELS if k in manifest.files):
        raise BundleError(f"the manifest's 'models' must describe each of {', '.join(GENERATE_MODELS)} "
                          "it holds, and nothing else")
    if spec.text is not None and not {"text_encoder", "tokenizer"} <= set(manifest.files):
        raise BundleError("the manifest describes a tokenizer but names no text_encoder and tokenizer files")
    if not spec.classes and "text_encoder" not in manifest.files:
        raise BundleError("a generate bundle without a text encoder must name at least one class")
    _check_sampling_defaults(spec)


def _check_generate_io(manifest: Manifest) -> None:
    spec = GenerationSpec.from_dict(manifest.preprocessing)
    unet_inputs, _ = manifest.specs_of("unet")
    for tensor in unet_inputs:
        if tensor.name == "sample" and len(tensor.shape) == 4 and any(
                isinstance(d, int) and d != want for d, want in zip(tensor.shape[1:], spec.latent_shape)):
            raise BundleError(f"the preprocessing samples {'x'.join(map(str, spec.latent_shape))} latents but the "
                              f"UNet input 'sample' is {tensor.shape}")


def _check_sampling_defaults(spec: GenerationSpec) -> None:
    """The recommended sampling settings must run on the bundle's own noise schedule (a sampler is
    built from both, which checks the schedule block value by value)."""
    defaults = spec.defaults
    try:
        steps, order = defaults.get("steps", 50), defaults.get("order", 3)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError(f"default steps must be a whole number of at least 1, not {steps!r}")
        for key, low, high in (("guidance", 0.0, math.inf), ("strength", 0.0, 1.0)):
            value = defaults.get(key, low if key == "guidance" else 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise UsageError(f"default {key} must be a finite number in [{low}, {high}], not {value!r}")
        make_sampler(str(defaults.get("sampler", "dpmpp")), spec.scheduler, steps, order)
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"preprocessing.scheduler / defaults cannot sample: {quote_error(exc)}") from exc


# --- the registry -----------------------------------------------------------------------------

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("classify", "a classifier", "flare export classifier", ("model",), _check_classify, _check_classify_io,
         EngineRule(max_batch=32), run="classifier-run", pipeline=False,
         model="flare.runtime.tasks.classify:Classifier",
         triton="flare.export.triton:write_classify",
         bench="flare.benchmarks.commands:bench_classify"),
    Task("enhance", "an enhance (super-resolution) bundle", "flare export sr", ("model",), _check_enhance, _no_check,
         EngineRule(max_batch=8, tiled=True), run="sr-run", pipeline=False,
         model="flare.runtime.tasks.enhance:Enhancer",
         triton="flare.export.triton:write_enhance",
         bench="flare.benchmarks.commands:bench_enhance"),
    Task("generate", "a generate bundle", "flare export diffusion", GENERATE_MODELS, _check_generate, _check_generate_io,
         EngineRule(max_batch=4, guided_parts=("unet", "text_encoder", "sampler_step"), tune_at_max=False),
         run="diffusion-run", pipeline=True,
         model="flare.runtime.tasks.generate:Generator",
         triton="flare.export.triton:write_generate",
         bench="flare.benchmarks.commands:bench_generate"),
)}


def task_named(name: str) -> Task:
    """The registry entry for ``name``, or a refusal listing the tasks this runtime knows."""
    try:
        return TASKS[name]
    except KeyError:
        raise BundleError(f"manifest task {name!r} is not one of {', '.join(TASKS)}") from None
