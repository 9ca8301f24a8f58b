"""`flare export triton`: the repository's configs against Triton's own schema and the ONNX files,
and what a client gets through the ensemble against the runtime's answer (classifier here; the
enhance and generate repositories are tested beside their bundles in test_enhance / test_generate)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from triton_fakes import Server, check_onnx_model, parse  # noqa: I001 - test support module

from flare.cli import cli
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.tasks.classify import Classifier


@pytest.fixture(scope="module")
def repo(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    result = CliRunner().invoke(cli, ["export", "triton", str(bundle), "--out", str(out), "--max-batch", "8"])
    assert result.exit_code == 0, result.output
    assert "docker run" in result.output and "tritonserver --model-repository=/models" in result.output
    return out


def test_every_config_parses_and_onnx_configs_agree_with_their_files(repo: Path, bundle: Path) -> None:
    name = bundle.name
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted([name, f"{name}_model", f"{name}_preprocess"])
    for folder in (p for p in repo.iterdir() if p.is_dir()):
        assert parse(folder / "config.pbtxt").name == folder.name
    model = check_onnx_model(repo / f"{name}_model")
    assert model.max_batch_size == 8 and list(model.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    accelerator = model.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    assert model.output[0].label_filename == "labels.txt"
    labels = (repo / f"{name}_model" / "labels.txt").read_text().splitlines()
    assert labels == Manifest.load(bundle).labels.classes


def test_the_ensemble_wires_preprocessing_into_the_model(repo: Path, bundle: Path) -> None:
    name = bundle.name
    ensemble, pre, model = (parse(repo / n / "config.pbtxt") for n in (name, f"{name}_preprocess", f"{name}_model"))
    assert ensemble.platform == "ensemble" and [i.name for i in ensemble.input] == ["IMAGE"]
    first, second = ensemble.ensemble_scheduling.step
    assert first.model_name == pre.name and second.model_name == model.name
    assert set(first.input_map) == {i.name for i in pre.input} and set(first.output_map) == {o.name for o in pre.output}
    assert set(second.input_map) == {i.name for i in model.input}
    assert [o.name for o in ensemble.output] == [o.name for o in model.output]
    assert pre.backend == "python" and pre.max_batch_size == model.max_batch_size


def test_a_client_gets_the_runtimes_probabilities_from_image_bytes(repo: Path, bundle: Path, sky_data: Path) -> None:
    from flare.runtime.tasks.classify import softmax

    files = sorted((sky_data / "hr").rglob("*.png"))[:5]
    server = Server(repo)
    try:
        images = np.array([[f.read_bytes()] for f in files], dtype=object)
        logits = server.infer(bundle.name, {"IMAGE": images})["logits"]
    finally:
        server.close()
    with Classifier(bundle, RunnerOptions("cpu")) as clf:
        want = clf.classify_files(files, top_k=8)
    got = softmax(logits)
    for row, prediction in zip(got, want):
        for label, p in prediction.top:
            assert abs(row[clf.labels.index(label)] - p) < 1e-5


def test_a_broken_image_is_that_requests_one_line_error(repo: Path, bundle: Path) -> None:
    server = Server(repo)
    try:
        with pytest.raises(RuntimeError, match=r"^the request's IMAGE is not an image Pillow can read"):
            server.infer(f"{bundle.name}_preprocess", {"IMAGE": np.array([[b"not an image"]], dtype=object)})
    finally:
        server.close()


def test_cpu_kind_fp16_precision_and_refusals(bundle: Path, tmp_path: Path) -> None:
    fp16 = tmp_path / "half"
    shutil.copytree(bundle, fp16)
    manifest = Manifest.load(fp16)
    manifest.precision = "fp16"  # the TensorRT accelerator follows the bundle's precision
    manifest.save(fp16)
    out = tmp_path / "repo"
    result = CliRunner().invoke(cli, ["export", "triton", str(bundle), str(fp16), "--out", str(out)])
    assert result.exit_code == 0, result.output
    half = parse(out / "half_model" / "config.pbtxt")
    assert half.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    result = CliRunner().invoke(cli, ["export", "triton", str(bundle), "--out", str(out), "--kind", "cpu",
                                      "--instances", "2"])
    assert result.exit_code == 0, result.output
    cpu = parse(out / f"{bundle.name}_model" / "config.pbtxt")
    assert not cpu.HasField("optimization") and cpu.instance_group[0].count == 2
    assert not (out / "half_model").exists()  # the repository is replaced as a whole
    same = tmp_path / "other" / bundle.name
    shutil.copytree(bundle, same)
    result = CliRunner().invoke(cli, ["export", "triton", str(bundle), str(same), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "rename one bundle folder" in result.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["export", "triton", str(bundle), "--out", str(foreign)])
    assert result.exit_code == 1 and "did not write" in result.output and (foreign / "notes.txt").exists()
