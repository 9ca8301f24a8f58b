"""Shared fixtures: a tiny synthetic sky data set and a briefly trained run, built once."""

from __future__ import annotations

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
    from flare.runtime.artifacts import ClassifierTraining
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


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``flare demo`` with its default settings (the README's demo), run once: its folder and output."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from flare.cli import cli

    out = tmp_path_factory.mktemp("demo") / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
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
    no_trt = pytest.mark.skip(reason="needs TensorRT 10 and a GPU (pip install 'flare-edge[gpu]')")
    cuda, trt = _cuda_available(), _tensorrt_available()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(no_gpu)
        if "tensorrt" in item.keywords and not trt:
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

