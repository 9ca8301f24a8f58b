"""flare bench: statistics, the FLOP count against a known model, skip reasons, the report."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from flare.benchmarks.endtoend import bound
from flare.benchmarks.stats import MIN_ITERATIONS, summarize, time_calls
from flare.benchmarks.targets import RunnerSession, Skip, Target, open_session
from flare.cli import cli
from flare.runtime.core.backends.open import open_runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import BundleFile, Manifest
from flare.runtime.foundation.errors import UsageError


@pytest.fixture(autouse=True)
def small_gemm_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reports' GEMM peak at 4096^3 costs seconds per backend on 2 cores; what these tests
    check of it (a rate, a share of it) holds at any size."""
    import flare.benchmarks.bench as bench

    monkeypatch.setattr(bench, "GEMM_N", {"cpu": 256, "cuda": 256})


def test_latency_percentiles_and_throughput() -> None:
    latencies = np.arange(1, 101) / 1000.0  # 1 ms .. 100 ms
    stats = summarize(latencies, batch=4)
    # numpy's linear interpolation between order statistics: rank q * (n - 1)
    assert stats.p50_ms == pytest.approx(50.5) and stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01) and stats.min_ms == pytest.approx(1) and stats.max_ms == 100
    assert stats.images_per_second == pytest.approx(4 * 100 / latencies.sum())
    assert stats.iterations == 100
    # order does not matter, an outlier moves p99 and the mean but not p50
    shuffled = np.random.default_rng(0).permutation(np.append(latencies[:-1], 10.0))
    spiky = summarize(shuffled, batch=4)
    assert spiky.p50_ms == pytest.approx(50.5) and spiky.p99_ms > 100 and spiky.mean_ms > stats.mean_ms
    for bad in ([], [0.0, 1.0], [float("nan")]):
        with pytest.raises(UsageError):
            summarize(bad, batch=1)


def test_time_calls_warms_up_and_keeps_to_its_budget() -> None:
    calls: list[float] = []

    def call() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.002 if len(calls) > 1 else 0.3)  # the first call is slow, like a compile

    latencies, first = time_calls(call, warmup=3, iterations=50, budget_s=0.001)
    assert len(latencies) == MIN_ITERATIONS and len(calls) == 3 + MIN_ITERATIONS
    assert first >= 0.3 and all(0.002 <= t < 0.3 for t in latencies)  # the slow call was not timed
    latencies, _ = time_calls(call, warmup=1, iterations=7)
    assert len(latencies) == 7


def test_flop_count_of_a_known_model_matches_torch_and_torchvision(tmp_path: Path) -> None:
    """ResNet-18 at 224: torch's own FLOP counter and torchvision's published 1.814 GMACs."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from torch.utils.flop_counter import FlopCounterMode

    from flare.benchmarks.flops import count_flops
    from flare.export.onnx_export import export_onnx

    model = torchvision.models.resnet18().eval()
    x = torch.zeros(2, 3, 224, 224)
    export_onnx(model, (x,), tmp_path / "r18.onnx", ["image"], ["logits"], {"image": {0: "batch"}})
    with FlopCounterMode(display=False) as counter:
        model(x[:1])
    counted = count_flops(tmp_path / "r18.onnx")
    assert counted.flops == counter.get_total_flops()
    published = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9 * 2
    assert counted.flops == pytest.approx(published, rel=0.005)
    assert set(counted.by_op) == {"Conv", "Gemm"}
    assert count_flops(tmp_path / "r18.onnx", batch=4).flops == 4 * counted.flops


def test_flop_count_of_each_operator(tmp_path: Path) -> None:
    """Hand-checked figures: Conv with groups, Gemm with transB, a broadcast batched MatMul."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from flare.benchmarks.flops import count_flops

    w = numpy_helper.from_array(np.zeros((8, 2, 3, 3), np.float32), "w")  # 8 out, groups 2 -> 2 in per group
    g = numpy_helper.from_array(np.zeros((10, 8 * 6 * 6), np.float32), "g")
    m = numpy_helper.from_array(np.zeros((3, 5, 7), np.float32), "m")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2, strides=[1, 1]),  # (N,4,8,8) -> (N,8,6,6)
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["y"], transB=1),
             helper.make_node("MatMul", ["a", "m"], ["z"])]  # (N,1,4,5) x (3,5,7) -> (N,3,4,7)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 8, 8]),
                                           helper.make_tensor_value_info("a", TensorProto.FLOAT, ["b", 1, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w, g, m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "ops.onnx"))
    counted = count_flops(tmp_path / "ops.onnx", batch=2)
    assert counted.by_op == {"Conv": 2 * (2 * 8 * 6 * 6) * (2 * 3 * 3), "Gemm": 2 * 2 * 10 * 288,
                             "MatMul": 2 * (2 * 3) * 4 * 7 * 5}
    assert counted.flops == sum(counted.by_op.values())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_gemm_peak_model_multiplies(tmp_path: Path, precision: str) -> None:
    pytest.importorskip("onnx")
    from flare.benchmarks.peak import best_gflops, gemm_input, gemm_onnx
    from flare.export.onnx_export import tensor_specs
    from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner

    path = gemm_onnx(tmp_path / "gemm.onnx", 64, precision)
    a = gemm_input(64, precision)
    import onnx
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    w = weights["w"].astype(np.float32) if precision != "int8" else weights["wq"] * weights["ws"]
    inputs, outputs = tensor_specs(path)
    with OnnxRuntimeRunner(path, inputs, outputs, RunnerOptions("cpu")) as runner:
        got = runner.infer({"a": a})["c"].astype(np.float32)
        want = a.astype(np.float32) @ w
        tolerance = {"fp32": 1e-4, "fp16": 0.05, "int8": 0.1}[precision]
        assert np.abs(got - want).max() < tolerance * np.abs(want).max() + 4.0 / 127
        assert best_gflops(lambda: runner.infer({"a": a}), 64, repeats=2) > 0


def test_io_binding_gives_the_runner_s_answer(bundle: Path) -> None:
    """The timed call of an ONNX Runtime row (IO binding) computes what infer() does."""
    runner = open_runner(bundle, Manifest.load(bundle), RunnerOptions("cpu"))
    session = RunnerSession(runner, Target("cpu", "fp32"))
    try:
        x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
        bound_out = session.bind(x)()[0].numpy()
        np.testing.assert_allclose(bound_out, runner.infer({"image": x})["logits"], rtol=1e-6)
        np.testing.assert_allclose(session.predict(x), bound_out, rtol=1e-6)
        with pytest.raises(UsageError, match="must be float32"):
            session.bind(x.astype(np.float64))
    finally:
        session.close()


def test_triage_bound_is_shared_cores_on_cpu_and_the_slower_part_on_gpu() -> None:
    assert bound(100.0, 100.0, on_gpu=False) == pytest.approx(50.0)
    assert bound(300.0, 100.0, on_gpu=False) == pytest.approx(75.0)
    assert bound(300.0, 100.0, on_gpu=True) == 100.0


def _skip_reason(target: Target, bundle: Path | None, torch_model=None, note: str = "") -> str:
    with pytest.raises(Skip) as caught:
        open_session(target, bundle, torch_model, note)
    return str(caught.value)


def test_every_skip_says_why(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    model = lambda: torch.nn.Linear(2, 2)  # noqa: E731
    assert "torch has no equivalent eager int8" in _skip_reason(Target("torch", "int8"), None, model)
    assert "fused variant is an ONNX graph" in _skip_reason(Target("torch", "fp32", "fused"), None, model)
    if not torch.cuda.is_available():
        assert "fp16 on a CPU is emulated" in _skip_reason(Target("torch", "fp16"), None, model)
    assert _skip_reason(Target("torch", "fp32"), None, None, "weights are elsewhere") == "weights are elsewhere"
    assert "no fp32 plain bundle" in _skip_reason(Target("cpu", "fp32"), None)
    assert "has no TensorRT engine for model; build one here" in _skip_reason(Target("trt-engine", "fp32"), bundle)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "backend cuda is not in this ONNX Runtime build" in _skip_reason(Target("cuda", "fp32"), bundle)
        assert "backend tensorrt is not in this ONNX Runtime build" in _skip_reason(Target("tensorrt", "fp32"), bundle)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert "needs the 'openvino' extra" in _skip_reason(Target("openvino", "fp32"), bundle)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert "torch is not installed" in _skip_reason(Target("torch-compile", "fp32"), None, model)


BENCH = ["--iterations", "3", "--warmup", "1", "--eval-images", "8", "--survey", "8", "--batch", "1,2"]


@pytest.mark.slow
def test_bench_a_run_side_by_side(trained_run: Path, tmp_path: Path) -> None:
    """One command: exported precisions and variants, every backend row or its skip reason,
    agreement and accuracy on the run's test split, end to end, headlines, files."""
    out = tmp_path / "bench"
    args = ["bench", str(trained_run), "--out", str(out), "--precision", "fp32,int8",
            "--backends", "torch,cpu,cuda,openvino", *BENCH]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["evaluation"]["labelled"] and "test split" in report["evaluation"]["where"]
    assert set(report["model"]["bundles"]) == {"fp32 plain", "fp32 fused", "int8 plain", "int8 fused"}
    assert report["model"]["flops_per_image"]["flops"] > 0 and "versions" in report["machine"]
    by_label = {t["label"]: t for t in report["targets"]}
    torch_row = by_label["torch fp32"]
    assert torch_row["status"] == "ok" and torch_row["top1_agreement"] == 1.0 and torch_row["accuracy_change"] == 0
    assert by_label["cpu fp32"]["top1_agreement"] >= 0.875  # the same model on ONNX Runtime
    assert by_label["cpu fp32 fused"]["agreement_with"] == "torch fp32"
    assert "torch int8" in by_label and "eager int8" in by_label["torch int8"]["reason"]
    for target in report["targets"]:
        if target["status"] == "skipped":
            assert target["reason"] and not target["rows"]
            continue
        assert [r["batch"] for r in target["rows"]] == [1, 2]
        for row in target["rows"]:
            assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
            assert row["iterations"] == 3 and row["peak_rss_mib"] > 0
            assert row["gflop_per_s"] == pytest.approx(row["images_per_second"] * target["gflops_per_image"])
    if by_label["cuda fp32"]["status"] == "skipped":
        assert "ONNX Runtime" in by_label["cuda fp32"]["reason"]
    assert {e["variant"] for e in report["end_to_end"]} == {"plain", "fused"}
    for e in report["end_to_end"]:
        assert e["bound_images_per_second"] == pytest.approx(
            1 / (1 / e["model_images_per_second"] + 1 / e["decode_images_per_second"]))
        assert e["images"] == 8 and e["errors"] == 0
    names = {h["name"] for h in report["headlines"]}
    assert {"ort_fp32_over_torch", "int8_over_fp32", "int8_agreement", "triage_share_of_bound"} <= names
    md = (out / "bench.md").read_text()
    assert "| cpu int8 | onnxruntime:cpu | 2 |" in md and "Not run here:" in md
    for chart in ("latency.png", "throughput.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # again into the same folder: the bundles are reused, not exported twice (one backend is enough to see it)
    again = CliRunner().invoke(cli, [*args[:args.index("--backends")], "--backends", "cpu", *BENCH])
    assert again.exit_code == 0 and again.output.count("reusing") == 4, again.output


def test_bench_a_bundle_as_it_is_and_its_mistakes(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["bench", str(bundle), "--out", str(out), "--backends", "cpu", *BENCH])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert [t["label"] for t in report["targets"]] == ["cpu fp32"] and not (out / "bundles").exists()

    def fails(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(cli, ["bench", *args])
        lines = r.stderr.strip().splitlines()  # progress may come first; the error is one last line
        assert [line for line in lines if line.startswith("Error:")] == lines[-1:] and "Traceback" not in r.stderr
        return r.exit_code, lines[-1] + "\n"

    assert fails(str(bundle), "--out", str(tmp_path / "c"), "--precision", "int8") == (
        2, f"Error: {bundle} holds fp32 only; to compare precisions give the RUN or model name it came from "
           "(--precision int8 asked for more)\n")
    code, err = fails(str(bundle), "--out", str(tmp_path / "c"), "--backends", "cpu,tpu")
    assert code == 2 and "'tpu' is not one of" in err
    code, err = fails(str(bundle), "--out", str(tmp_path / "c"), "--batch", "1,,8")
    assert code == 2 and "an empty item" in err
    code, err = fails(str(bundle), "--out", str(tmp_path / "c"), "--batch", "0")
    assert code == 2 and "0 is not in the range x>=1" in err
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    with open(damaged / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    code, err = fails(str(damaged), "--out", str(tmp_path / "c"))
    assert code == 1 and "sha256 mismatch" in err
    limited = tmp_path / "limited"
    shutil.copytree(bundle, limited)
    manifest = Manifest.load(limited)
    manifest.files["model"] = BundleFile.describe(limited, "model.onnx", max_batch=4)
    manifest.save(limited)
    code, err = fails(str(limited), "--out", str(tmp_path / "c"), "--backends", "cpu", "--batch", "1,8", *BENCH[:-2])
    assert code == 2 and "takes batches up to 4, not 8" in err
    code, err = fails("no/such/run", "--out", str(tmp_path / "d"))
    assert code == 2 and "no/such/run is not a bundle" in err


def test_a_backend_that_fails_while_running_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """torch.compile that cannot compile here (no C++ compiler, an unsupported op) is a
    reported skip, and the other rows still run."""
    torch = pytest.importorskip("torch")
    from flare.benchmarks.bench import Settings, _measure_target
    from flare.benchmarks.source import BenchSource, EvalSet
    from flare.runtime.core.preprocess import PreprocessSpec

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("inductor could not compile\nthis graph")

    images = np.zeros((2, 32, 32, 3), np.uint8)
    source = BenchSource("broken", "broken", PreprocessSpec(size=32), ["a", "b"], {}, EvalSet(images, None, "zeros"),
                         tmp_path, torch_model=Broken)
    settings = Settings(backends=["torch-compile"], precisions=["fp32"], variants=["plain"], batches=[1],
                        iterations=3, warmup=1, max_seconds=1.0, triage_backend="cpu")
    result, predicted = _measure_target(Target("torch-compile", "fp32"), source, settings, {}, {})
    assert predicted is None and result["status"] == "skipped" and result["rows"] == []
    assert result["reason"] == "failed while running: RuntimeError: inductor could not compile this graph"


def test_results_summary_takes_the_worst_batch(tmp_path: Path) -> None:
    from flare.benchmarks.summary import summarize

    def result(arch: str, values: list[float]) -> dict:
        return {"model": {"architecture": arch, "input_size": 224, "flops_per_image": {"gflops": 4.1}},
                "machine": {"cpu": "Test CPU", "cpus": 2, "memory_gib": 8},
                "headlines": [{"name": "int8_over_fp32", "value": v, "met": v >= 2.5, "detail": f"batch {b}"}
                              for b, v in zip((1, 8), values)]}

    for arch, values in (("resnet50", [3.0, 2.0]), ("densenet121", [2.6, 2.7])):
        (tmp_path / arch).mkdir()
        (tmp_path / arch / "bench.json").write_text(json.dumps(result(arch, values)))
    table = summarize(tmp_path)
    assert "Test CPU, 2 cores, 8 GiB, no GPU" in table
    assert "| resnet50 (resnet50, 224 px) | 4.10 | 2.00 MISSED (batch 8) |" in table
    assert "| densenet121 (densenet121, 224 px) | 4.10 | 2.60 met (batch 1) |" in table


def test_results_summary_has_a_generation_table(tmp_path: Path) -> None:
    from flare.benchmarks.summary import summarize

    def row(backend: str, precision: str, seconds: float) -> dict:
        return {"backend": backend, "precision": precision, "batch": 1, "seconds_per_image": seconds}

    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "bench.json").write_text(json.dumps({
        "task": "generate", "image": "64 px", "steps": 20, "sampler": "dpmpp order 3, guidance 8",
        "machine": {"cpu": "Test CPU", "cpus": 2, "memory_gib": 8}, "headlines": [],
        "rows": [row("torch", "fp32", 1.0), row("onnxruntime:cpu", "fp32", 0.9), row("openvino:cpu", "fp32", 0.8),
                 row("onnxruntime:cpu", "fp16", 0.1)]}))
    table = summarize(tmp_path)
    assert "| gen (1 per call) | 64 px, 20 steps of dpmpp order 3, guidance 8 | 1.000 | 0.800 (openvino:cpu) | 1.25 met |" in table


def test_sr_bench_measures_tiled_enhancement_against_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    out = tmp_path / "sr"
    result = CliRunner().invoke(cli, ["bench", "tiny_x4", "--out", str(out), "--backends", "torch,cpu,torch-compile",
                                      "--precision", "fp32,fp16,int8", "--batch", "1,3", "--tile", "32",
                                      "--input-size", "72", "--iterations", "2", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["rows"]}
    assert set(rows) == {("torch", "fp32", 1), ("onnxruntime:cpu", "fp32", 1), ("onnxruntime:cpu", "fp32", 3),
                         ("onnxruntime:cpu", "fp16", 1), ("onnxruntime:cpu", "fp16", 3)}
    assert data["tile"] == 32 and data["image"].startswith("72x72")
    for row in rows.values():
        assert row["megapixels_per_second"] == pytest.approx(72 * 72 / 1e6 / (row["p50_ms"] / 1e3))
        assert row["speedup_vs_torch_fp32"] == pytest.approx(
            row["megapixels_per_second"] / rows[("torch", "fp32", 1)]["megapixels_per_second"])
    assert rows[("onnxruntime:cpu", "fp32", 3)]["psnr_vs_torch_db"] > 100  # the same picture as PyTorch's tiles
    assert 40 < rows[("onnxruntime:cpu", "fp16", 3)]["psnr_vs_torch_db"] < 100
    reasons = {s["target"]: s["reason"] for s in data["skipped"]}
    assert "fp32 or fp16" in reasons["int8"] and "fp16 on CPU" in reasons["torch fp16"]
    assert "not a super-resolution backend" in reasons["torch-compile"]
    assert data["headlines"][0]["target"] == 1.3 and "| onnxruntime:cpu | fp16 | 3 |" in (out / "bench.md").read_text()
    again = CliRunner().invoke(cli, ["bench", "tiny_x4", "--out", str(out), "--backends", "cpu", "--precision", "fp32",
                                     "--tile", "32", "--input-size", "72", "--iterations", "2", "--warmup", "1"])
    assert again.exit_code == 0 and "exporting" not in again.output  # the bundle of the same weights is reused
