"""The static TensorRT op check (flare.export.trt_ops): what it refuses and how exports use it.

The three families' real exports are checked in test_enhance / test_generate and here for
the classifier (fp32, fp16, int8); the refusals are shown on small hand-built graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from flare.cli import cli  # noqa: E402
from flare.export.trt_ops import UnsupportedOpError, check_model, check_models  # noqa: E402
from flare.runtime.core.manifest import Manifest


def _graph(path: Path, nodes: list, initializers: list | None = None, opset: int = 19) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=initializers or []),
                              opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))
    return path


def _init(name: str, value: np.ndarray) -> object:
    return numpy_helper.from_array(value, name)


def test_a_plain_graph_passes(tmp_path: Path) -> None:
    check = check_model(_graph(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"], name="r")]))
    assert check.ops == ["Relu"] and check.unsupported == []


@pytest.mark.parametrize("node,inits,reason", [
    (helper.make_node("Unique", ["x"], ["y"], name="u"), [], "not in TensorRT's ONNX operator table"),
    (helper.make_node("FusedConv", ["x"], ["y"], name="f", domain="com.microsoft"), [], "'com.microsoft' domain"),
    (helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="linear", antialias=1),
     [_init("s", np.array([1, 1, 2, 2], np.float32))], "antialias"),
    (helper.make_node("Resize", ["x", "", "s"], ["y"], name="rc", mode="cubic",
                      coordinate_transformation_mode="tf_crop_and_resize"),
     [_init("s", np.array([1, 1, 2, 2], np.float32))], "Resize with tf_crop_and_resize"),
    (helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["y"], name="q"),
     [_init("sc", np.array(0.1, np.float32)), _init("zp", np.array(128, np.uint8))], "uint8 Q/DQ"),
    (helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["y"], name="q8"),
     [_init("sc", np.array(0.1, np.float32)), _init("zp", np.array(3, np.int8))], "non-zero zero point"),
    (helper.make_node("ReduceSum", ["x", "x_axes"], ["y"], name="rd"), [], "axes computed at run time"),
])
def test_refusals_name_the_node_and_the_reason(tmp_path: Path, node: object, inits: list, reason: str) -> None:
    check = check_model(_graph(tmp_path / "m.onnx", [node], inits))
    assert len(check.unsupported) == 1 and reason in check.unsupported[0]
    assert f"node '{node.name}'" in check.unsupported[0]
    with pytest.raises(UnsupportedOpError, match="--allow-unsupported-ops"):
        check_models({"model": tmp_path / "m.onnx"})
    recorded = check_models({"model": tmp_path / "m.onnx"}, allow_unsupported=True)
    assert recorded["passed"] is False and recorded["models"]["model"]["unsupported"] == check.unsupported


def test_symmetric_int8_and_constant_axes_pass(tmp_path: Path) -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["d"], name="d"),
             helper.make_node("Constant", [], ["axes"], value=_init("axes_v", np.array([1], np.int64))),
             helper.make_node("ReduceSum", ["d", "axes"], ["y"], name="rd")]
    inits = [_init("sc", np.array(0.1, np.float32)), _init("zp", np.array(0, np.int8))]
    assert check_model(_graph(tmp_path / "m.onnx", nodes, inits)).unsupported == []


def test_subgraphs_are_checked(tmp_path: Path) -> None:
    then = helper.make_graph([helper.make_node("Unique", ["x"], ["t"], name="inner")], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Constant", [], ["c"], value=_init("cv", np.array(True))),
             helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)]
    check = check_model(_graph(tmp_path / "m.onnx", nodes))
    assert "If" in check.ops and len(check.unsupported) == 1 and "'inner'" in check.unsupported[0]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_classifier_exports_pass_in_every_precision(trained_run: Path, tmp_path: Path, precision: str) -> None:
    from flare.export.classifier import export_classifier

    # The one-epoch fixture model has near-tied logits, so int8 may flip a few argmaxes: this test judges the
    # TensorRT operator check only. The parity gate on a trained model is test_demo's reduced-precision test.
    path, _ = export_classifier(str(trained_run), tmp_path / precision, precision=precision, samples=16,
                                allow_parity_failure=True)
    ops = Manifest.load(path).extra["tensorrt_ops"]
    assert ops["passed"], ops["models"]["model"]["unsupported"]
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= set(ops["models"]["model"]["ops"])


def test_fp32_bundle_records_the_check(bundle: Path) -> None:
    ops = Manifest.load(bundle).extra["tensorrt_ops"]
    assert ops["passed"] and "Conv" in ops["models"]["model"]["ops"]


def test_export_refuses_an_unsupported_node_unless_allowed(trained_run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import flare.export.trt_ops as trt_ops

    monkeypatch.setattr(trt_ops, "SUPPORTED", trt_ops.SUPPORTED - {"Conv"})  # as if TensorRT lacked Conv
    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["export", "classifier", str(trained_run), "--out", str(out), "--samples", "4"])
    assert result.exit_code == 1 and "(Conv): not in TensorRT's ONNX operator table" in result.output
    assert "Traceback" not in result.output and not out.exists() and not out.with_name("b.partial").exists()
    result = CliRunner().invoke(cli, ["export", "classifier", str(trained_run), "--out", str(out), "--samples", "4",
                                      "--allow-unsupported-ops"])
    assert result.exit_code == 0, result.output
    assert Manifest.load(out).extra["tensorrt_ops"]["passed"] is False
