"""Class- or prompt-conditioned image generation from a ``generate`` bundle, without torch.

The whole sampling loop is numpy around ONNX Runtime (or another runner): the initial noise
comes from each image's own seed (:func:`~flare.runtime.core.generation_spec.initial_noise`), a
numpy sampler (:mod:`flare.runtime.core.schedulers`) steps the latents, and with guidance the
unconditional and conditional halves go through the UNet in one call per step. Runners are
opened only for the parts a request needs: class prompts need no text encoder, and only a
source image needs the VAE encoder.

Given the same weights and seeds, the images equal the PyTorch pipeline's
(:meth:`flare.training.diffusion.model.LatentDiffusion.generate`) within the tolerance the
tests state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner
from flare.runtime.core.generation_spec import GenerationSpec, initial_noise, source_input, step_coefficients, to_uint8
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.schedulers import SAMPLERS, Sampler, make_sampler
from flare.runtime.foundation.errors import BundleError, FlareError, UsageError
from flare.runtime.tasks.model import BundleModel, PartOpener


class Generator(BundleModel):
    """A generate bundle: conditioning, the numpy sampling loop around the UNet, the VAE decoder."""

    TASK = "generate"
    LOCAL_FILES = ("class_embeddings", "tokenizer")

    def __init__(self, bundle: str | Path, options: RunnerOptions = RunnerOptions(), batch: int = 4,
                 open_part: PartOpener | None = None, device_loop: bool | None = None) -> None:
        """``batch`` is how many images are sampled together (the UNet sees twice that with guidance)."""
        super().__init__(bundle, options, open_part)
        #: Keep latents on the device between steps: None when the UNet runs on a GPU through
        #: ONNX Runtime and the bundle has the sampler-step graph; True forces it (tests), False never.
        self.device_loop = device_loop
        if batch < 1:
            raise UsageError(f"--batch must be at least 1, not {batch}")
        self.spec = GenerationSpec.from_dict(self.manifest.preprocessing)
        self.batch = batch
        table_path = self.bundle / self.manifest.files["class_embeddings"].path
        self.table = np.load(table_path, allow_pickle=False).astype(np.float32)
        if self.table.ndim != 3 or len(self.table) != len(self.spec.classes) + 1:
            raise BundleError(f"{table_path} must hold one (tokens, dim) row per class plus the null prompt, "
                              f"not shape {self.table.shape}; re-export the bundle")
        self._tokenizer = None

    @classmethod
    def describe(cls, manifest: Manifest) -> list[str]:
        pre = manifest.preprocessing
        return [f"generate    {pre.get('image_size')} px images from {pre.get('latent_channels')}x"
                f"{pre.get('latent_size')}x{pre.get('latent_size')} latents; classes "
                f"{', '.join(pre.get('classes') or []) or '(none tabled)'}; "
                f"{'free-text prompts' if pre.get('text') else 'no text encoder'}; source images: "
                f"{pre.get('image_mode') or 'no'}"]

    @property
    def has_text_encoder(self) -> bool:
        return "text_encoder" in self.manifest.files

    @property
    def known_classes(self) -> list[str] | None:
        """The classes this bundle can generate; None when a text encoder takes any name."""
        return None if self.has_text_encoder else list(self.spec.classes)

    @property
    def supports_image_variation(self) -> bool:
        return self.spec.image_mode is not None and "vae_encoder" in self.manifest.files

    def _run(self, key: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_part(key, feeds).astype(np.float32, copy=False)

    # --- conditioning ------------------------------------------------------------------------

    def contexts(self, names: Sequence[str | None] = (), prompts: Sequence[str] = ()) -> np.ndarray:
        """Cross-attention context for class names (None: the null prompt) or free-text prompts.

        Class names the bundle carries come from its table; other names and free text need
        the text encoder.
        """
        if prompts and names:
            raise UsageError("give class names or prompts, not both")
        if prompts:
            if not self.has_text_encoder:
                raise UsageError(f"{self.bundle} has no text encoder, so it cannot take --prompt; use --class "
                                 f"with one of: {', '.join(self.spec.classes)}")
            return self._encode_text(list(prompts))
        rows: list[np.ndarray | None] = []
        texts = []
        for name in names:
            if name is None:
                rows.append(self.table[-1])
            elif name in self.spec.classes:
                rows.append(self.table[self.spec.classes.index(name)])
            elif self.has_text_encoder:
                rows.append(None)
                texts.append(self.spec.prompt_template.format(cls=name))
            else:
                raise UsageError(f"{self.bundle} generates the classes {', '.join(self.spec.classes)}; it cannot "
                                 f"generate {name!r} (it has no text encoder for other names)")
        encoded = iter(self._encode_text(texts)) if texts else iter(())
        return np.stack([row if row is not None else next(encoded) for row in rows])

    def _encode_text(self, prompts: list[str]) -> np.ndarray:
        if self._tokenizer is None:
            from flare.runtime.core.tokenizer import PromptTokenizer

            if self.spec.text is None:
                raise BundleError(f"{self.bundle}: the manifest has a text encoder but no tokenizer settings")
            self._tokenizer = PromptTokenizer(self.bundle / self.manifest.files["tokenizer"].path, self.spec.text)
        return self._run("text_encoder", {"input_ids": self._tokenizer.encode(prompts)})

    def encode_sources(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 source images -> scaled latents, as the model was trained to see them."""
        if not self.supports_image_variation:
            raise UsageError(f"{self.bundle} cannot take --source: its model has no source-image condition "
                             "(or the bundle has no VAE encoder)")
        batch = np.stack([source_input(img, self.spec.image_size) for img in images])
        return self._run("vae_encoder", {"images": batch})

    # --- sampling -----------------------------------------------------------------------------

    def first_step(self, steps: int, strength: float, with_source: bool) -> int:
        """Where sampling starts: img2img skips the noisiest ``1 - strength`` of the steps."""
        if with_source and self.spec.image_mode == "img2img":
            if not 0.0 < strength <= 1.0:
                raise UsageError(f"--strength must be in (0, 1], not {strength}")
            return max(0, steps - max(1, round(steps * strength)))
        return 0

    def steps_run(self, steps: int, strength: float, with_source: bool) -> int:
        """How many UNet steps one image takes (for progress)."""
        return steps - self.first_step(steps, strength, with_source)

    def sample(self, contexts: np.ndarray, seeds: Sequence[int], *, steps: int, guidance: float, sampler: str,
               order: int = 3, source_latents: np.ndarray | None = None, strength: float = 0.75,
               on_step: Callable[[int], None] | None = None) -> np.ndarray:
        """Images (N x H x W x 3 uint8) for the given contexts and seeds, in one batch.

        ``source_latents`` condition image-variation models through the UNet, or, for
        pipelines (img2img), are noised to ``strength`` of the schedule and denoised from
        there. ``on_step`` is called after every UNet step with the number of images.
        """
        n = len(seeds)
        if len(contexts) != n or (source_latents is not None and len(source_latents) != n):
            raise UsageError("sample needs one context (and one source latent, if any) per seed")
        if steps < 1:
            raise UsageError(f"--steps must be at least 1, not {steps}")
        if sampler not in SAMPLERS:
            raise UsageError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
        scheduler = make_sampler(sampler, self.spec.scheduler, steps, order)
        noise = np.stack([initial_noise(s, self.spec.latent_shape) for s in seeds])
        first = 0
        extra: dict[str, np.ndarray] = {}
        if source_latents is not None and self.spec.image_mode == "img2img":
            first = self.first_step(steps, strength, True)
            scheduler.start_at(first)
            latents = scheduler.add_noise(source_latents, noise, first)
        else:
            latents = noise * np.float32(scheduler.init_noise_sigma)
            if self.spec.image_mode == "channels":
                extra["source_latent"] = (np.zeros_like(noise) if source_latents is None
                                          else source_latents.astype(np.float32))
        guided = guidance != 1.0
        context = contexts.astype(np.float32)
        if guided:  # one call: the unconditional half drops the prompt and the source, as training did
            null = np.repeat(self.table[-1:], n, axis=0)
            context = np.concatenate([null, context])
            extra = {k: np.concatenate([np.zeros_like(v), v]) for k, v in extra.items()}
        if self._on_device(len(context)):
            latents = self._denoise_on_device(scheduler, first, latents, context, extra, guidance, on_step)
        else:
            for i in range(first, len(scheduler.timesteps)):
                x = np.concatenate([latents, latents]) if guided else latents
                t = np.full(len(x), scheduler.timesteps[i], np.float32)
                out = self._run("unet", {"sample": x.astype(np.float32), "timestep": t,
                                         "encoder_hidden_states": context, **extra})
                if guided:
                    uncond, cond = out[:n], out[n:]
                    out = uncond + np.float32(guidance) * (cond - uncond)
                latents = scheduler.step(out, i, latents)
                if on_step is not None:
                    on_step(n)
        images = self._run("vae_decoder", {"latent": latents.astype(np.float32)})
        return to_uint8(images)

    def _on_device(self, unet_batch: int) -> bool:
        """Whether to sample with the latents left on the device (see :meth:`_denoise_on_device`)."""
        if self.device_loop is False or "sampler_step" not in self.manifest.files:
            return False
        unet = self.runner_for("unet")
        if not isinstance(unet, OnnxRuntimeRunner) or (unet.max_batch or unet_batch) < unet_batch:
            return False
        return bool(self.device_loop) or unet.device == "cuda"

    def _denoise_on_device(self, scheduler: Sampler, first: int, latents: np.ndarray, context: np.ndarray,
                           extra: dict[str, np.ndarray], guidance: float,
                           on_step: Callable[[int], None] | None) -> np.ndarray:
        """The sampling loop with the latents, contexts and predictions kept on the UNet's device.

        Each step the UNet's output goes straight into the bundle's sampler-step graph, which
        applies guidance and the sampler's update (:meth:`Sampler.linear_step` gives its numbers,
        the only thing sent over besides the timestep) and hands back the next UNet input. Only
        the final latents come back to the host. Same steps as the host loop, in float32.
        """
        unet, stepper = self.runner_for("unet"), self.runner_for("sampler_step")
        n = len(latents)
        x = unet.to_device(latents.astype(np.float32))
        unet_x = unet.to_device(np.concatenate([latents] * (len(context) // n)).astype(np.float32))
        fixed = {name: unet.to_device(value) for name, value in {"encoder_hidden_states": context, **extra}.items()}
        zeros = unet.to_device(np.zeros_like(latents, dtype=np.float32))
        history = [zeros, zeros]  # the two previous clean-sample predictions, newest first
        for i in range(first, len(scheduler.timesteps)):
            t = np.full(len(context), scheduler.timesteps[i], np.float32)
            out = unet.infer_values({"sample": unet_x, "timestep": t, **fixed})["noise_pred"]
            coefficients = step_coefficients(scheduler.linear_step(i), guidance)
            result = stepper.infer_values({"sample": x, "noise_pred": out, "coefficients": coefficients,
                                           "history1": history[0], "history2": history[1]})
            x, unet_x = result["next_sample"], result["next_unet_sample"]
            history = [result["x0"], history[0]]
            if on_step is not None:
                on_step(n)
        return x.numpy()

    def generate(self, names: Sequence[str], seeds: Sequence[int], *, steps: int = 50, guidance: float = 8.0,
                 sampler: str = "dpmpp", order: int = 3, sources: Sequence[np.ndarray] | None = None,
                 strength: float = 0.75, prompts: Sequence[str] | None = None,
                 on_step: Callable[[int], None] | None = None) -> np.ndarray:
        """One image per (class name or prompt, seed[, source image]), ``batch`` images at a time.

        The same call shape as the PyTorch pipeline's, so FLARE's stage 2 takes either.
        """
        requests = list(prompts) if prompts is not None else list(names)
        if len(requests) != len(seeds) or (sources is not None and len(sources) != len(seeds)):
            raise UsageError("generate needs one seed (and one source image, if any) per class name or prompt")
        out = []
        for i in range(0, len(seeds), self.batch):
            part = slice(i, i + self.batch)
            contexts = (self.contexts(prompts=requests[part]) if prompts is not None
                        else self.contexts(names=requests[part]))
            latents = None if sources is None else self.encode_sources(list(sources[part]))
            out.append(self.sample(contexts, list(seeds[part]), steps=steps, guidance=guidance, sampler=sampler,
                                   order=order, source_latents=latents, strength=strength, on_step=on_step))
        if not out:
            raise FlareError("nothing to generate")
        return np.concatenate(out)

