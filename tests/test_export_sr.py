"""``flare export sr``: every SwinIR layout the project loads exports, passes the gate and
matches PyTorch on new shapes; fp16 keeps its fragile parts in fp32 and stays finite on real
images; the gate refuses a failing bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

from flare.cli import cli  # noqa: E402
from flare.export.parity import ParityError  # noqa: E402
from flare.export.sr import export_sr, recommend_tile  # noqa: E402
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import EnhanceSpec  # noqa: E402
from flare.training.sr.swinir import CONFIGS, SwinIRConfig, load_swinir  # noqa: E402

#: Each structural variant of the released models (head, residual connection, scale, window,
#: range, channels) at a width that exports in seconds; full-size exports are in docs/commands.md.
LAYOUTS = {
    "classical_x2": SwinIRConfig(scale=2, upsampler="pixelshuffle", embed_dim=12, depths=(2,), num_heads=(2,),
                                 num_feat=8),
    "classical_x3": SwinIRConfig(scale=3, upsampler="pixelshuffle", embed_dim=12, depths=(2,), num_heads=(2,),
                                 num_feat=8),
    "lightweight_x4": CONFIGS["lightweight_x4"],
    "realsr_l_3conv_x4": SwinIRConfig(scale=4, upsampler="nearest+conv", embed_dim=16, depths=(2, 2),
                                      num_heads=(2, 2), resi_connection="3conv", num_feat=8),
    "jpeg_grey_w7": SwinIRConfig(scale=1, upsampler="", embed_dim=12, depths=(2,), num_heads=(3,), window_size=7,
                                 in_chans=1, img_range=255.0),
}


def real_images(folder: Path) -> Path:
    """Real photographs shipped with scikit-image (one of them the Hubble deep field)."""
    data = pytest.importorskip("skimage.data")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("hubble_deep_field", "astronaut", "coffee"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_images(tmp_path_factory.mktemp("real"))


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_exports_and_matches_pytorch(name: str, calib: Path, tmp_path: Path, swinir_checkpoint) -> None:
    cfg = LAYOUTS[name]
    ckpt = swinir_checkpoint(cfg, tmp_path / f"{name}.pth")
    out, report = export_sr(ckpt, tmp_path / "bundle", calib=calib)
    assert report.passed and report.psnr_db >= 60 and report.samples == 7
    manifest = Manifest.load(out)
    spec = EnhanceSpec.from_dict(manifest.preprocessing)
    assert manifest.task == "enhance" and (spec.scale, spec.window, spec.channels) == (cfg.scale, cfg.window_size,
                                                                                       cfg.in_chans)
    assert (spec.tile, spec.overlap) == recommend_tile(cfg) and spec.tile % cfg.window_size == 0
    assert manifest.parity["tolerance"] == {"min_psnr_db": 60.0, "max_abs_diff": 2e-3}
    assert manifest.inputs[0].shape == ["batch", cfg.in_chans, "height", "width"]
    # a shape the gate did not see: batch 4, sides not multiples of the window
    model, _ = load_swinir(ckpt)
    x = torch.rand(4, cfg.in_chans, 23, 41, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    assert got.shape == (4, cfg.in_chans, 23 * cfg.scale, 41 * cfg.scale)
    np.testing.assert_allclose(got, expected, atol=2e-4 * cfg.img_range, rtol=0)


def test_train_sr_run_exports_with_its_own_data(sky_data: Path, tmp_path: Path) -> None:
    from flare.runtime.core.runs import SRTraining
    from flare.training.sr.train import train_sr

    run = tmp_path / "run"
    train_sr(SRTraining(data=str(sky_data / "hr"), epochs=1, steps_per_epoch=2, batch=2, patch=32), run)
    result = CliRunner().invoke(cli, ["export", "sr", str(run), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    manifest = Manifest.load(tmp_path / "b")
    assert manifest.parity["passed"] and "run's data" in manifest.parity["inputs"]
    assert manifest.source["run"] == str(run.resolve()) and manifest.source["bicubic_residual"] is True
    assert manifest.source["model"] == "swinir tiny_x4"


def _float_types(model_path: Path) -> dict[str, int]:
    """elem_type of every tensor in the graph, after shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input,
                                                                *model.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def test_fp16_keeps_fragile_parts_in_fp32_and_is_finite_on_real_images(calib: Path, tmp_path: Path,
                                                                        swinir_checkpoint) -> None:
    cfg = CONFIGS["small_x4"]
    ckpt = swinir_checkpoint(cfg, tmp_path / "small.pth")
    out, report = export_sr(ckpt, tmp_path / "fp16", precision="fp16", calib=calib)
    assert report.passed and report.psnr_db >= 40 and report.tolerance["min_psnr_db"] == 40.0
    manifest = Manifest.load(out)
    assert manifest.precision == "fp16" and manifest.inputs[0].dtype == manifest.outputs[0].dtype == "float32"
    graph = onnx.load(str(out / "model.onnx")).graph
    types = _float_types(out / "model.onnx")
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    assert len(softmax) == sum(cfg.depths) and len(norms) == 2 * sum(cfg.depths) + 2
    assert all(types[n.input[0]] == fp32 and types[n.output[0]] == fp32 for n in softmax + norms)
    assert matmuls and all(types[n.output[0]] == fp16 for n in matmuls)  # the bulk runs in half
    # every crop of every real image, whole: finite, and close to PyTorch fp32
    model, _ = load_swinir(ckpt)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for path in sorted(calib.glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))[:96, :120]
        x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        (got,) = session.run(None, {"image": x})
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        assert np.isfinite(got).all(), path.name
        mse = float(np.mean((np.clip(got, 0, 1) - np.clip(expected, 0, 1)) ** 2))
        assert 10 * np.log10(1 / mse) >= 40, path.name


def test_gate_refuses_a_failing_bundle_unless_overridden(calib: Path, tmp_path: Path, swinir_checkpoint,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from flare.export import parity

    ckpt = swinir_checkpoint(LAYOUTS["classical_x2"], tmp_path / "c.pth")
    monkeypatch.setitem(parity.IMAGE_TOLERANCES, "fp32", (500.0, 0.0))  # no export can be that exact
    with pytest.raises(ParityError, match="refusing to write"):
        export_sr(ckpt, tmp_path / "refused", calib=calib)
    assert not (tmp_path / "refused").exists() and not (tmp_path / "refused.partial").exists()
    out, report = export_sr(ckpt, tmp_path / "forced", calib=calib, allow_parity_failure=True)
    assert not report.passed
    assert json.loads((out / "manifest.json").read_text())["parity"]["passed"] is False


def test_recommended_tile_shrinks_with_model_width() -> None:
    tiles = {name: recommend_tile(CONFIGS[name]) for name in ("tiny_x4", "classical_x4", "realsr_l_x4")}
    assert tiles["tiny_x4"][0] > tiles["classical_x4"][0] > tiles["realsr_l_x4"][0] >= 32
    for tile, overlap in tiles.values():
        assert tile % 8 == 0 and overlap % 8 == 0 and 16 <= overlap < tile


def test_export_sr_mistakes_are_one_line(tmp_path: Path) -> None:
    not_swinir = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, not_swinir)
    result = CliRunner().invoke(cli, ["export", "sr", str(not_swinir), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "not a SwinIR checkpoint" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["export", "sr", str(not_swinir), "--out", str(tmp_path / "b"),
                                      "--precision", "int8"])
    assert result.exit_code == 2 and "int8" in result.output
