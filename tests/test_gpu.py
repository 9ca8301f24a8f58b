"""GPU paths: ONNX Runtime's CUDA provider and native TensorRT engines (skipped on CPU machines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.tasks.classify import Classifier


@pytest.mark.gpu
def test_cuda_provider_runs_and_matches_cpu(bundle: Path, sky_data: Path) -> None:
    files = sorted((sky_data / "hr").rglob("*.png"))[:8]
    cpu = Classifier(bundle, RunnerOptions("cpu"))
    gpu = Classifier(bundle, RunnerOptions("cuda"))
    assert gpu.backend == "onnxruntime:cuda"
    a = np.array([[p for _, p in sorted(r.top)] for r in cpu.classify_files(files, top_k=8)])
    b = np.array([[p for _, p in sorted(r.top)] for r in gpu.classify_files(files, top_k=8)])
    np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_bundle(trained_run: Path, sky_data: Path, tmp_path: Path, precision: str) -> None:
    from flare.export.classifier import export_classifier

    from flare.export.tensorrt import TensorRTOptions

    path, _ = export_classifier(str(trained_run), tmp_path / precision, precision=precision,
                                tensorrt=TensorRTOptions(engine=True))
    files = sorted((sky_data / "hr").rglob("*.png"))[:8]
    reference = Classifier(path, RunnerOptions("cpu")).classify_files(files, top_k=1)
    engine = Classifier(path, RunnerOptions("trt-engine"))
    assert engine.backend == "tensorrt:engine"
    got = engine.classify_files(files, top_k=1)
    agree = np.mean([r.top[0][0] == g.top[0][0] for r, g in zip(reference, got)])
    assert agree >= 0.85


@pytest.mark.gpu
def test_cuda_io_binding_and_cuda_graphs_match_the_plain_session(bundle: Path, sky_data: Path) -> None:
    files = sorted((sky_data / "hr").rglob("*.png"))[:8]
    plain = Classifier(bundle, RunnerOptions("cpu")).classify_files(files, top_k=8)
    graphed = Classifier(bundle, RunnerOptions("cuda", cuda_graph=True))
    for _ in range(3):  # first run learns shapes, second captures, third replays
        got = graphed.classify_files(files, top_k=8)
    io = graphed.runner._io
    assert io is not None and io.graphs and all(s.graph_id >= 0 for s in io._slots.values()), graphed.runner.notes
    a = np.array([[p for _, p in sorted(r.top)] for r in plain])
    b = np.array([[p for _, p in sorted(r.top)] for r in got])
    np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.tensorrt
def test_flare_export_engine_adds_an_engine_to_a_bundle_and_it_runs(bundle: Path, sky_data: Path,
                                                                    tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from flare.cli import cli

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    result = CliRunner().invoke(cli, ["export", "engine", str(copy), "--max-batch", "8"])
    assert result.exit_code == 0, result.output
    files = sorted((sky_data / "hr").rglob("*.png"))[:8]
    reference = Classifier(copy, RunnerOptions("cpu")).classify_files(files, top_k=1)
    engine = Classifier(copy, RunnerOptions("trt-engine"))
    assert engine.runner.max_batch == 8
    got = engine.classify_files(files, top_k=1)
    assert np.mean([r.top[0][0] == g.top[0][0] for r, g in zip(reference, got)]) >= 0.85
