"""ONNX Runtime runner details that matter on a GPU, checked on the CPU provider where they can be:
IO binding with reused buffers, the --cuda-graph request, and the TensorRT provider's options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flare.cli import cli
from flare.runtime.core.backends.open import open_runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner
from flare.runtime.core.manifest import Manifest
from flare.runtime.tasks.classify import Classifier


def test_bound_buffers_give_the_plain_sessions_outputs_for_changing_shapes(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    plain = open_runner(bundle, manifest, RunnerOptions("cpu"))
    bound = OnnxRuntimeRunner(bundle / "model.onnx", manifest.inputs, manifest.outputs, RunnerOptions("cpu"),
                              io_binding=True)
    name = manifest.inputs[0].name
    side = manifest.inputs[0].shape[2]
    rng = np.random.default_rng(0)
    with plain, bound:
        kept = []
        for batch in (2, 2, 3, 2):
            x = rng.standard_normal((batch, 3, side, side), dtype=np.float32)
            want, got = plain.infer({name: x}), bound.infer({name: x})
            np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
            kept.append((got["logits"], want["logits"]))
        # earlier results are not overwritten by later runs into the same buffers
        for got, want in kept:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert len(bound._io._slots) == 2


def test_bound_slots_are_capped_least_recently_used_first(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    bound = OnnxRuntimeRunner(bundle / "model.onnx", manifest.inputs, manifest.outputs, RunnerOptions("cpu"),
                              io_binding=True)
    name, side = manifest.inputs[0].name, manifest.inputs[0].shape[2]
    rng = np.random.default_rng(1)
    with bound:
        bound._io.MAX_SLOTS = 2
        for batch in (1, 2, 1, 3, 4):
            bound.infer({name: rng.standard_normal((batch, 3, side, side), dtype=np.float32)})
        assert [key[0][1][0] for key in bound._io._slots] == [3, 4]
        x = rng.standard_normal((1, 3, side, side), dtype=np.float32)
        keep = x.copy()
        bound.infer({name: x})  # a new slot, bound to a copy of x
        bound.infer({name: rng.standard_normal((1, 3, side, side), dtype=np.float32)})  # written in place
        np.testing.assert_array_equal(x, keep)  # the caller's array was not the buffer


def test_cuda_graph_without_the_cuda_backend_runs_with_a_note(bundle: Path) -> None:
    with Classifier(bundle, RunnerOptions("cpu", cuda_graph=True)) as clf:
        assert clf.backend == "onnxruntime:cpu"
        assert any("--cuda-graph needs --backend cuda" in n for n in clf.runner.notes)


def test_classify_cli_accepts_cuda_graph(bundle: Path, sky_data: Path) -> None:
    image = sorted((sky_data / "hr").rglob("*.png"))[0]
    result = CliRunner().invoke(cli, ["classify", str(bundle), str(image), "--backend", "cpu", "--cuda-graph"])
    assert result.exit_code == 0, result.output


def test_tensorrt_provider_gets_the_bundle_profile_and_caches(bundle: Path) -> None:
    runner = open_runner(bundle, Manifest.load(bundle), RunnerOptions("tensorrt"))
    options = runner._trt_options()
    side = Manifest.load(bundle).inputs[0].shape[2]
    assert options["trt_profile_min_shapes"] == f"image:1x3x{side}x{side}"
    assert options["trt_profile_max_shapes"] == f"image:32x3x{side}x{side}"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(bundle / "trt_cache")
    assert options["trt_timing_cache_enable"] and options["trt_fp16_enable"] is False


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_gpu_backends_on_a_cpu_build_say_so(bundle: Path, backend: str) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has GPU providers")
    from flare.runtime.foundation.errors import BackendError

    with pytest.raises(BackendError, match="not in this ONNX Runtime build"):
        open_runner(bundle, Manifest.load(bundle), RunnerOptions(backend)).activate()


def test_cuda_graph_is_not_asked_for_a_model_with_control_flow(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    runner = OnnxRuntimeRunner(bundle / "model.onnx", manifest.inputs, manifest.outputs, RunnerOptions("cuda", cuda_graph=True),
                               graph_blockers=["If"])
    assert runner._wants_graphs() is False and "has If nodes" in runner.notes[0]
    plain = OnnxRuntimeRunner(bundle / "model.onnx", manifest.inputs, manifest.outputs,
                              RunnerOptions("cuda", cuda_graph=True))
    assert plain._wants_graphs() is True and plain.notes == []


def test_info_shows_the_op_check_and_engines(bundle: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(bundle), "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tensorrt    ONNX parser op check PASS against onnx-tensorrt" in result.output
