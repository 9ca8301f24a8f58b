"""Shared fixtures: a tiny synthetic sky data set and a briefly trained run, built once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The tests' tensors are tiny: one intra-op thread is as fast, and far faster when the
# machine is shared (oversubscribed OpenMP threads slowed some tests tenfold).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def sky_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 classes x 6 procedural images at 32 px (HR under hr/, LR under lr/)."""
    from flare.training.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("sky")
    synthesize(out, SynthConfig(per_class=6, size=32, seed=0))
    return out


@pytest.fixture(scope="session")
def trained_run(sky_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 trained for one epoch at 32 px on ``sky_data``."""
    pytest.importorskip("torch")
    from flare.runtime.core.runs import ClassifierTraining
    from flare.training.classifiers.train import train

    run = tmp_path_factory.mktemp("run") / "run"
    train(ClassifierTraining(model="resnet18", data=str(sky_data / "hr"), epochs=1, batch=16, lr=1e-3, input_size=32), run)
    return run


@pytest.fixture(scope="session")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_run`` exported to an fp32 classify bundle (parity gate passed)."""
    pytest.importorskip("onnx")
    from flare.export.classifier import export_classifier

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_classifier(str(trained_run), out)
    return out


#: ``flare demo``'s options in the tests: the README's demo, trained for fewer epochs at a smaller
#: input (CI time); ``benchmarks/real_sky.py`` judges the default recipe on real photos.
DEMO_OPTIONS = ["--epochs", "8", "--input-size", "64"]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``flare demo`` on the README's data and steps (:data:`DEMO_OPTIONS`), run once: its folder and output."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from flare.cli import cli

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), *DEMO_OPTIONS])
    assert result.exit_code == 0, result.output
    return out, result.stdout


def _cuda_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return _cuda_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU / TensorRT tests, with the reason, where the machine lacks them."""
    no_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu (CUDAExecutionProvider)")
    no_trt = pytest.mark.skip(reason="needs TensorRT (10 or 11) and a GPU (pip install 'flare-edge[gpu]')")
    cuda, trt = _cuda_available(), _tensorrt_available()
    for item in items:
        if item.get_closest_marker("gpu") and not cuda:
            item.add_marker(no_gpu)
        if item.get_closest_marker("tensorrt") and not trt:
            item.add_marker(no_trt)


@pytest.fixture(scope="session")
def swinir_checkpoint():
    """Factory: ``(config, path, seed=0) -> path`` of a SwinIR saved the way the official releases
    are (``params_ema``), random weights with LayerNorm affines and position biases moved off
    their initial values so that they matter."""
    torch = pytest.importorskip("torch")
    from flare.training.sr.swinir import SwinIR

    def save(cfg, path: Path, seed: int = 0) -> Path:
        torch.manual_seed(seed)
        model = SwinIR.from_config(cfg)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "relative_position_bias_table" in name:
                    param.normal_(0.0, 1.0)
                elif "norm" in name:
                    param.add_(torch.randn_like(param) * 0.1)
        torch.save({"params_ema": model.state_dict()}, path)
        return path

    return save



# ---------------------------------------------------------------------- diffusion pipelines


def _tiny_clip(folder: Path) -> tuple[object, object]:
    """A random CLIP tokenizer + text encoder small enough for a unit test, saved to ``folder``."""
    transformers = pytest.importorskip("transformers", reason="CLIP text encoders need transformers")
    torch = pytest.importorskip("torch")
    from flare.runtime.core.taxonomy import FINE_CLASSES

    # a word-level BPE: letters, then merges that build each word of the class prompts
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.update({c: len(vocab), c + "</w>": len(vocab) + 1})
    merges: list[str] = []
    for word in sorted({w for c in FINE_CLASSES for w in f"an image of {c} in space".split()}):
        parts, cur = list(word[:-1]) + [word[-1] + "</w>"], word[0]
        for part in parts[1:]:
            merges.append(f"{cur} {part}")
            cur += part
            vocab.setdefault(cur, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in dict.fromkeys(merges)))
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                           model_max_length=16)
    config = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                         num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=16,
                                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    encoder = transformers.CLIPTextModel(config)
    tokenizer.save_pretrained(str(folder))
    encoder.save_pretrained(str(folder))
    return tokenizer, encoder


def _tiny_sd_pipeline(folder: Path) -> None:
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer, encoder = _tiny_clip(folder / "clip")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 32),
                                layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(16, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder / "pipe"))


@pytest.fixture(scope="session")
def tiny_clip():
    """Factory: ``folder -> (tokenizer, encoder)``, a random CLIP tokenizer + text encoder saved there."""
    return _tiny_clip


@pytest.fixture(scope="session")
def tiny_sd_pipeline():
    """Factory: ``folder -> None``, a random Stable-Diffusion-shaped pipeline saved in ``folder/pipe``
    (its CLIP parts also in ``folder/clip``)."""
    return _tiny_sd_pipeline
