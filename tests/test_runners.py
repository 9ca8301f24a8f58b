"""One runner interface: lifecycle, inputs checked against the manifest, batch limits, notes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bundle_edits import write_manifest
from flare.cli import cli
from flare.runtime.apps.triage import triage
from flare.runtime.core.backends.open import open_runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import BundleFile, Manifest
from flare.runtime.foundation.errors import BackendError, UsageError
from flare.runtime.tasks.classify import Classifier


def test_lifecycle(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    runner = open_runner(bundle, manifest, RunnerOptions("cpu"))
    feed = {"image": np.zeros((2, 3, 32, 32), np.float32)}
    with pytest.raises(BackendError, match="not active"):
        runner.infer(feed)
    with runner:
        assert runner.is_active and runner.name == "onnxruntime:cpu"
        out = runner.infer(feed)
        assert list(out) == [manifest.outputs[0].name] and out["logits"].shape == (2, 8)
    assert not runner.is_active
    runner.deactivate()  # idempotent


@pytest.mark.parametrize("feed, message", [
    ({"pixels": np.zeros((1, 3, 32, 32), np.float32)}, r"missing \['image'\], unexpected \['pixels'\]"),
    ({"image": np.zeros((1, 3, 32, 32), np.float64)}, "must be float32, not float64"),
    ({"image": np.zeros((3, 32, 32), np.float32)}, "must have 4 dimensions"),
    ({"image": np.zeros((1, 3, 64, 64), np.float32)}, "axis 2 is 64"),
    ({"image": np.zeros((0, 3, 32, 32), np.float32)}, "empty batch"),
    ({"image": [[0.0]]}, "numpy array"),
])
def test_inputs_are_checked_before_anything_runs(bundle: Path, feed: dict, message: str) -> None:
    with open_runner(bundle, Manifest.load(bundle), RunnerOptions("cpu")) as runner:
        with pytest.raises(UsageError, match=message):
            runner.infer(feed)


def test_batch_limit_is_enforced_and_classify_splits_to_fit(bundle: Path, sky_data: Path, tmp_path: Path) -> None:
    limited = tmp_path / "limited"
    manifest = Manifest.load(bundle)
    manifest.files["model"] = BundleFile.describe(bundle, "model.onnx", max_batch=3)
    import shutil

    shutil.copytree(bundle, limited)
    manifest.save(limited)
    files = sorted((sky_data / "hr").rglob("*.png"))[:7]
    with Classifier(limited, RunnerOptions("cpu")) as clf:
        assert clf.runner.max_batch == 3
        with pytest.raises(UsageError, match="over this model's limit of 3"):
            clf.runner.infer({"image": np.zeros((4, 3, 32, 32), np.float32)})
        seen: list[int] = []
        infer = clf.runner.infer
        clf.runner.infer = lambda feeds: seen.append(len(feeds["image"])) or infer(feeds)  # type: ignore[method-assign]
        got = clf.classify_files(files, top_k=8, batch_size=7)
    assert seen == [3, 3, 1]
    with Classifier(bundle, RunnerOptions("cpu")) as whole:
        want = whole.classify_files(files, top_k=8, batch_size=7)
    for a, b in zip(got, want):
        np.testing.assert_allclose(sorted(p for _, p in a.top), sorted(p for _, p in b.top), atol=1e-6)


def test_classify_and_triage_agree_on_the_macro_class_of_every_image(bundle: Path, sky_data: Path,
                                                                       tmp_path: Path) -> None:
    folder = sky_data / "lr"
    out = tmp_path / "t.csv"
    with Classifier(bundle, RunnerOptions("cpu")) as clf:
        triage(folder, clf, out)
        predictions = {Path(p.path).relative_to(folder).as_posix(): p
                       for p in clf.classify_files(sorted(folder.rglob("*.png")), top_k=len(clf.labels))}
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(predictions) == 48
    for row in rows:
        pred = predictions[row["path"]]
        assert row["macro_class"] == pred.macro
        assert float(row["macro_confidence"]) == pytest.approx(pred.macro_probability, abs=2e-6)
        # the macro class is the one whose summed fine probabilities are largest
        sums: dict[str, float] = {}
        for name, prob in pred.top:
            sums[clf.macro_of[name]] = sums.get(clf.macro_of[name], 0.0) + prob
        assert pred.macro == max(sums, key=lambda m: sums[m])


def test_a_provider_that_does_not_start_is_reported(bundle: Path, sky_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime leaves out a provider it cannot start; we say so in info and triage."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with Classifier(bundle) as clf:
        assert clf.backend == "onnxruntime:cpu"
        assert any("CUDAExecutionProvider" in note for note in clf.notes)
        summary = triage(sky_data / "lr", clf, tmp_path / "t.csv")
    assert "backend: CUDAExecutionProvider" in summary.format()
    info = CliRunner().invoke(cli, ["info", str(bundle)])
    assert info.exit_code == 0 and "dropped     CUDAExecutionProvider" in info.output
    forced = CliRunner().invoke(cli, ["classify", str(bundle), str(next((sky_data / "lr").rglob("*.png"))),
                                      "--backend", "cuda"])
    assert forced.exit_code == 1 and "could not start" in forced.output


def test_info_reports_checksums_and_backend(bundle: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(bundle)])
    assert result.exit_code == 0
    assert "sha256 checked" in result.output and "runs on     onnxruntime:cpu" in result.output
    as_json = json.loads(CliRunner().invoke(cli, ["info", str(bundle), "--json"]).stdout)
    assert len(as_json["files"]["model"]["sha256"]) == 64


def test_openvino_runs_the_bundle_like_onnx_runtime(bundle: Path, sky_data: Path) -> None:
    """The OpenVINO runner behind the same interface: same checks, same probabilities (fp32 kept)."""
    pytest.importorskip("openvino")
    files = sorted((sky_data / "hr").rglob("*.png"))[:8]
    with Classifier(bundle, RunnerOptions("openvino")) as ov, Classifier(bundle, RunnerOptions("cpu")) as ort:
        assert ov.backend == "openvino:cpu"
        got, want = ov.classify_files(files, top_k=8), ort.classify_files(files, top_k=8)
        with pytest.raises(UsageError, match="must be float32, not float64"):
            ov.runner.infer({"image": np.zeros((1, 3, 32, 32), np.float64)})
    for a, b in zip(got, want):
        pa, pb = dict(a.top), dict(b.top)
        assert max(abs(pa[c] - pb[c]) for c in pa) < 1e-4  # bf16 would differ by ~1e-2


def test_openvino_refuses_a_manifest_that_contradicts_the_model(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["outputs"][0]["name"] = "scores"
    write_manifest(copy, data)
    result = CliRunner().invoke(cli, ["info", str(copy), "--backend", "openvino"])
    assert result.exit_code == 1 and "lists outputs ['scores'] but model.onnx has ['logits']" in result.output


def test_openvino_missing_names_its_extra(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    result = CliRunner().invoke(cli, ["classify", str(bundle), "x.png", "--backend", "openvino"])
    assert result.exit_code == 1
    assert "needs the 'openvino' extra: pip install 'flare-edge[openvino]'" in result.output


def test_triage_stops_onnx_runtime_spinning_where_decoders_share_the_cores(bundle: Path) -> None:
    """Spin-waiting threads took the cores triage's decoders need (int8 triage: 410 -> 510
    images/s on 2 cores); classify keeps ONNX Runtime's default."""
    key = "session.intra_op.allow_spinning"
    with Classifier(bundle, RunnerOptions("cpu", spin=False)) as quiet, Classifier(bundle, RunnerOptions("cpu")) as default:
        assert quiet.runner.session.get_session_options().get_session_config_entry(key) == "0"
        options = default.runner.session.get_session_options()
        with pytest.raises(Exception, match=key):  # no such entry: ONNX Runtime's default
            options.get_session_config_entry(key)
