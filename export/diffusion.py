"""``flare export diffusion``: a ``train-diffusion`` RUN or a local Stable-Diffusion-shaped
pipeline folder to a checked ``generate`` bundle.

The bundle holds one ONNX graph per part, each with a dynamic batch:

* ``unet.onnx``: ``sample``, ``timestep``, ``encoder_hidden_states`` (and ``source_latent``
  for our image-variation models, pooled inside the graph exactly as in training) ->
  ``noise_pred``. Guidance runs it once per step at twice the batch.
* ``vae_decoder.onnx``: ``latent`` (scaled, as the sampler holds it) -> ``images`` in [-1, 1].
* ``vae_encoder.onnx``: ``images`` -> ``latent`` (the scaled posterior mean), for ``--source``.
* ``text_encoder.onnx`` + ``tokenizer.json`` when the source has a CLIP text encoder, so
  free-text prompts work without torch (the ``tokenizers`` package is torch-free).
* ``class_embeddings.npy``: the encoded class prompts ("An image of {class} in space") and
  last the null prompt, so class-prompted generation needs no text encoder at all.

Every part passes its own parity gate on real data: the user's images (``--calib`` or the
RUN's data) through the VAE encoder give real latents, which are noised at timesteps across
the schedule for the UNet and decoded for the decoder, at batches 1 to 3. A failing part
refuses the whole bundle.

fp16 puts the UNet in half precision with fp32 inputs and outputs. The VAE decoder is known
to overflow in fp16 (NaN or black images, diffusers #1083 / #7188), so it is only kept in
fp16 when it stays finite and within the fp16 image tolerance on the real latents; otherwise
it stays fp32 and the manifest says why. The encoder and text encoder stay fp32 (they run
once per image, not once per step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flare.export.parity import GateReport, Judge, ParityReport, judge_images, judge_outputs, sample_images
from flare.export.pipeline import BundleSpec, Fallback, FileSpec, PartSpec, export_bundle, torch_outputs
from flare.export.precision import in_precision
from flare.export.tensorrt import TensorRTOptions
from flare.runtime.core.artifact import identify, sha256
from flare.runtime.core.generation_spec import STEP_COEFFICIENTS, GenerationSpec, TextSpec, prompt_for, source_input
from flare.runtime.core.runs import DiffusionRun
from flare.runtime.core.schedulers import alphas_cumprod, beta_schedule
from flare.runtime.core.tokenizer import PromptTokenizer
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.foundation.paths import check_apart
from flare.runtime.foundation.progress import log

#: Timesteps the UNet gate checks, across the whole schedule (noisy to nearly clean).
GATE_TIMESTEPS = (999, 700, 400, 100, 10, 1)
#: Free-text prompts the text-encoder gate checks beside the class prompts and "".
GATE_PROMPTS = ("a faint spiral galaxy seen edge on with a dust lane", "star")


class UNetGraph(nn.Module):
    """The UNet as the runtime calls it; ``source_latent`` only for image-variation models."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                source_latent: torch.Tensor | None = None) -> torch.Tensor:
        cond = None if source_latent is None else self.model.image_condition(source_latent)
        return self.model.predict(sample, timestep, encoder_hidden_states, cond)


class DecoderGraph(nn.Module):
    """Scaled latents -> images in [-1, 1] (the scaling factor is inside the graph)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent)


class EncoderGraph(nn.Module):
    """Images in [-1, 1] -> scaled latents (the posterior mean: deterministic)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode(images)


class TextGraph(nn.Module):
    """Token ids -> the text encoder's last hidden state (the UNet's context)."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids)[0]


def _part(name: str, graph: nn.Module, output: str, cases: list[dict[str, np.ndarray]], judge: Judge,
          precision: str = "fp32", fallback: Fallback | None = None) -> PartSpec:
    """A part with a dynamic batch on every input, traced on its second case and gated on all of them."""
    inputs = list(cases[0])
    return PartSpec(name, graph=in_precision(graph), inputs=inputs, outputs=[output],
                    dynamic={n: {0: "batch"} for n in inputs},
                    example=tuple(torch.from_numpy(v) for v in cases[1].values()), cases=cases,
                    references=torch_outputs(graph, cases), judge=judge, precision=precision, fallback=fallback)


def _batches(rows: np.ndarray, sizes: tuple[int, ...] = (1, 2, 3)) -> list[np.ndarray]:
    """Consecutive batches of the given sizes, cycling through ``rows``."""
    out, k = [], 0
    for b in sizes:
        out.append(np.stack([rows[(k + i) % len(rows)] for i in range(b)]))
        k += b
    return out


def export_diffusion(source: Path, out: Path, *, precision: str = "fp32", calib: Path | None = None,
                     classes: list[str] | None = None, tensorrt: TensorRTOptions = TensorRTOptions(),
                     allow_parity_failure: bool = False) -> tuple[Path, GateReport]:
    """Export, check and write the bundle; raises :class:`ParityError` when a part fails its gate."""
    from flare.training.diffusion.model import TextPromptEncoder, _schedule_kwargs, load_diffusion

    if precision not in ("fp32", "fp16"):
        raise UsageError(f"--precision must be fp32 or fp16 for diffusion, not {precision!r}")
    check_apart((Path(out), "--out"), [(Path(source), "RUN_OR_PIPELINE")])
    model = load_diffusion(source, "cpu").float().eval()
    is_run = model.info.kind == "run"
    if is_run and classes:
        raise UsageError("--classes is for pipelines; a RUN generates the classes it was trained on "
                         f"({', '.join(model.info.classes or [])})")
    names = list(model.info.classes or []) if is_run else list(dict.fromkeys(classes or []))
    text = model.cond if isinstance(model.cond, TextPromptEncoder) else None

    recorded = DiffusionRun.load(source).train.data if is_run and identify(source) is DiffusionRun else ""
    data = Path(recorded) if recorded else None
    pictures, where = sample_images(calib, data, 6)
    images = np.stack([source_input(p, model.image_size) for p in pictures])
    with torch.inference_mode():
        latents = model.encode(torch.from_numpy(images)).float().numpy()
        table = model.cond.encode([*names, None]).float().numpy()
    log(f"parity data: {len(pictures)} {where}, encoded to real latents {tuple(latents.shape[1:])}")

    rng = np.random.default_rng(0)
    ac = alphas_cumprod(beta_schedule(_schedule_kwargs(model.scheduler_config)))
    unet_cases = []
    for k, x0 in enumerate(_batches(latents)):
        b = len(x0)
        t = np.array([GATE_TIMESTEPS[(k + i) % len(GATE_TIMESTEPS)] for i in range(b)])
        a = ac[t].astype(np.float32).reshape(-1, 1, 1, 1)
        noise = rng.standard_normal(x0.shape, dtype=np.float32)
        case = {"sample": np.sqrt(a) * x0 + np.sqrt(1 - a) * noise, "timestep": t.astype(np.float32),
                "encoder_hidden_states": table[[(k + i) % len(table) for i in range(b)]]}
        if model.info.image_mode == "channels":
            src = x0[::-1].copy()
            src[0] = 0.0  # the unconditional half of a guided batch: no source image
            case["source_latent"] = src
        unet_cases.append(case)
    outputs = judge_outputs(where, classify=False)
    decoder_fallback = Fallback("the fp16 VAE decoder", "real latents") if precision == "fp16" else None
    parts = [  # the UNet and the VAE decoder in the asked precision, the encoders in fp32
        _part("unet", UNetGraph(model), "noise_pred", unet_cases, outputs, precision),
        _part("vae_decoder", DecoderGraph(model), "images", [{"latent": x} for x in _batches(latents)],
              judge_images(where, signed=True), precision, decoder_fallback),
    ]
    if model.supports_image_variation:
        parts.append(_part("vae_encoder", EncoderGraph(model), "latent", [{"images": x} for x in _batches(images)],
                           outputs))
    latent_shape = (model.latent_channels, model.latent_size, model.latent_size)
    files = [FileSpec("class_embeddings", "class_embeddings.npy",
                      lambda path: np.save(path, table.astype(np.float32), allow_pickle=False)),
             FileSpec("sampler_step", "sampler_step.onnx", lambda path: save_sampler_step(path, latent_shape))]
    tokenizer_spec = None
    if text is not None:
        prompts = [prompt_for(n) for n in names] + ["", *GATE_PROMPTS]
        ids = text.tokenizer(prompts, padding="max_length", max_length=text.tokenizer.model_max_length,
                             truncation=True, return_tensors="np").input_ids.astype(np.int64)
        parts.append(_part("text_encoder", TextGraph(text.text_encoder), "last_hidden_state",
                           [{"input_ids": x} for x in _batches(ids)], outputs))
        tokenizer_spec = TextSpec(max_length=int(text.tokenizer.model_max_length),
                                  pad_id=int(text.tokenizer.pad_token_id))
        files.append(FileSpec("tokenizer", "tokenizer.json",
                              lambda path: _save_tokenizer(text.tokenizer, path, tokenizer_spec, prompts)))

    spec = GenerationSpec(image_size=model.image_size, latent_channels=model.latent_channels,
                          latent_size=model.latent_size, classes=names,
                          image_mode=model.info.image_mode if model.supports_image_variation else None,
                          scheduler=_schedule_kwargs(model.scheduler_config), text=tokenizer_spec)
    weights = Path(source) / "unet" / "diffusion_pytorch_model.safetensors"
    bundle = BundleSpec(
        "generate", precision, parts, preprocessing=spec.to_dict(), files=files,
        source={"model": f"diffusion {model.info.kind}", "checkpoint": str(Path(source).resolve()),
                "sha256": sha256(weights) if weights.is_file() else None, **model.info.extra})
    return export_bundle(bundle, out, tensorrt, allow_parity_failure)


def _save_tokenizer(tokenizer: Any, path: Path, spec: TextSpec, prompts: list[str]) -> ParityReport:
    """Write the fast-tokenizer file and check the runtime's tokenisation gives the same ids."""
    from transformers import CLIPTokenizerFast

    folder = Path(tokenizer.name_or_path)
    try:
        fast = tokenizer if tokenizer.is_fast else CLIPTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise FlareError(f"cannot convert the tokenizer in {folder} for the runtime ({exc}); "
                         "save it with save_pretrained from transformers") from exc
    fast.backend_tokenizer.save(str(path))
    want = tokenizer(prompts, padding="max_length", max_length=spec.max_length, truncation=True,
                     return_tensors="np").input_ids
    got = PromptTokenizer(path, spec).encode(prompts)
    same = float((got == want).all(axis=1).mean())
    return ParityReport(compared="transformers tokenizer vs runtime tokenizer", inputs=f"{len(prompts)} prompts",
                        samples=len(prompts), max_abs_diff=float(np.abs(got - want).max()), max_rel_diff=0.0,
                        top1_agreement=same, tolerance={"min_exact_agreement": 1.0}, passed=same == 1.0,
                        backend="tokenizers")


def save_sampler_step(path: Path, latent_shape: tuple[int, int, int]) -> None:
    """Write the sampler-step graph (see ``STEP_INPUTS`` in :mod:`flare.runtime.core.generation_spec`).

    Plain element-wise ONNX, built here rather than traced: guidance from the two halves of
    the UNet output (one half each when there is no guidance, so the same graph serves both),
    the clean-sample prediction and the sampler's linear update with the step's numbers as an
    input, so one graph serves DDIM and DPM-Solver++ of every order and prediction type.
    """
    import onnx
    from onnx import TensorProto, helper

    c, h, w = latent_shape
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("sample", f32, ["batch", c, h, w]),
              helper.make_tensor_value_info("noise_pred", f32, ["unet_batch", c, h, w]),
              helper.make_tensor_value_info("coefficients", f32, [len(STEP_COEFFICIENTS)]),
              helper.make_tensor_value_info("history1", f32, ["batch", c, h, w]),
              helper.make_tensor_value_info("history2", f32, ["batch", c, h, w])]
    outputs = [helper.make_tensor_value_info("next_sample", f32, ["batch", c, h, w]),
               helper.make_tensor_value_info("next_unet_sample", f32, ["unet_batch", c, h, w]),
               helper.make_tensor_value_info("x0", f32, ["batch", c, h, w])]
    consts = [helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
              helper.make_tensor("ones3", TensorProto.INT64, [3], [1, 1, 1])]
    nodes = [helper.make_node("Shape", ["sample"], ["sample_shape"], start=0, end=1),
             helper.make_node("Shape", ["noise_pred"], ["unet_shape"], start=0, end=1),
             helper.make_node("Sub", ["unet_shape", "sample_shape"], ["cond_start"]),
             helper.make_node("Slice", ["noise_pred", "zero", "sample_shape", "zero"], ["uncond"]),
             helper.make_node("Slice", ["noise_pred", "cond_start", "unet_shape", "zero"], ["cond"])]
    for k, name in enumerate(STEP_COEFFICIENTS):
        consts.append(helper.make_tensor(f"at_{name}", TensorProto.INT64, [], [k]))
        nodes.append(helper.make_node("Gather", ["coefficients", f"at_{name}"], [f"k_{name}"], axis=0))
    nodes += [helper.make_node("Sub", ["cond", "uncond"], ["delta"]),
              helper.make_node("Mul", ["k_guidance", "delta"], ["guided_delta"]),
              helper.make_node("Add", ["uncond", "guided_delta"], ["out"])]

    def weighted(pairs: list[tuple[str, str]], result: str) -> None:
        terms = []
        for weight, tensor in pairs:
            nodes.append(helper.make_node("Mul", [f"k_{weight}", tensor], [f"{result}_{weight}"]))
            terms.append(f"{result}_{weight}")
        nodes.append(helper.make_node("Sum", terms, [result]))

    weighted([("data_x", "sample"), ("data_out", "out")], "x0")
    weighted([("sample", "sample"), ("output", "out"), ("w2", "history2"), ("w1", "history1"), ("w0", "x0")],
             "next_sample")
    nodes += [helper.make_node("Div", ["unet_shape", "sample_shape"], ["copies"]),
              helper.make_node("Concat", ["copies", "ones3"], ["repeats"], axis=0),
              helper.make_node("Tile", ["next_sample", "repeats"], ["next_unet_sample"])]
    graph = helper.make_graph(nodes, "sampler_step", inputs, outputs, initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="flare-edge")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
