"""Shared fixtures: a tiny synthetic sky data set and a briefly trained run, built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sky_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 classes x 6 procedural images at 32 px (HR under hr/, LR under lr/)."""
    from training.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("sky")
    synthesize(out, SynthConfig(per_class=6, size=32, seed=0))
    return out


@pytest.fixture(scope="session")
def trained_run(sky_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 trained for one epoch at 32 px on ``sky_data``."""
    pytest.importorskip("torch")
    from training.train import TrainConfig, train

    run = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig(model="resnet18", data=str(sky_data / "hr"), epochs=1, batch=16, lr=1e-3, img_size=32), run)
    return run


@pytest.fixture(scope="session")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_run`` exported to an fp32 classify bundle (parity gate passed)."""
    pytest.importorskip("onnx")
    from export.classifier import export_classifier

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_classifier(str(trained_run), out)
    return out
