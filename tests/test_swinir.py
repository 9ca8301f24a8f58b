"""SwinIR: official-checkpoint compatibility, config detection, ONNX export.

Compatibility is checked against spandrel's SwinIR (a port of the official network) built
with each released variant's exact hyper-parameters and random weights: its state dict is
saved the way the official files are, loaded with ``load_swinir``, and both networks must
agree on an image whose sides are not multiples of the window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spandrel.architectures.SwinIR import SwinIR as RefSwinIR

from flare.runtime.foundation.errors import FlareError
from flare.training.sr.swinir import CONFIGS, SwinIR, SwinIRConfig, detect_config, load_swinir

ATOL = 1e-4


def _reference(cfg: SwinIRConfig, seed: int = 0) -> torch.nn.Module:
    """Spandrel's SwinIR for ``cfg`` with randomised weights, including LayerNorm affines and
    position-bias tables (left near their init they would barely affect the output)."""
    torch.manual_seed(seed)
    ref = RefSwinIR(
        img_size=8 * cfg.window_size,  # a training patch size; it only sizes the stored attn_mask
        in_chans=cfg.in_chans,
        embed_dim=cfg.embed_dim,
        depths=list(cfg.depths),
        num_heads=list(cfg.num_heads),
        window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio,
        upscale=cfg.scale,
        img_range=cfg.img_range,
        upsampler=cfg.upsampler,
        resi_connection=cfg.resi_connection,
    ).eval()
    with torch.no_grad():
        for name, param in ref.named_parameters():
            if "relative_position_bias_table" in name:
                param.normal_(0.0, 1.0)
            elif "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return ref


def _compare(ref: torch.nn.Module, ours: SwinIR, shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = ref(x)
        got = ours(x)
    assert got.shape == expected.shape == (shape[0], shape[1], shape[2] * ours.scale, shape[3] * ours.scale)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


OFFICIAL_VARIANTS = [
    "classical_x2",
    "classical_x3",
    "classical_x4",
    "classical_x8",
    "lightweight_x2",
    "lightweight_x3",
    "lightweight_x4",
    "realsr_m_x4",
    "realsr_l_x4",
]


@pytest.mark.parametrize("name", OFFICIAL_VARIANTS)
def test_official_variant_loads_and_matches_reference(name: str, tmp_path: Path) -> None:
    cfg = CONFIGS[name]
    ref = _reference(cfg)
    state = ref.state_dict()
    assert any(k.endswith("attn_mask") for k in state)  # the file carries the derived buffers
    wrapper = "params" if name == "classical_x3" else "params_ema"
    path = tmp_path / f"{name}.pth"
    torch.save({wrapper: state}, path)

    model, detected = load_swinir(path)

    assert detected == cfg
    assert model.scale == cfg.scale and model.window_size == 8
    assert set(model.state_dict()) == {k for k in state if not k.endswith("attn_mask")}
    _compare(ref, model, (1, 3, 13, 19))


@pytest.mark.parametrize(
    "cfg",
    [
        # nearest+conv beyond the released x4 (spandrel's x2 / x8 layouts: conv_up1 / conv_up1-3)
        SwinIRConfig(scale=2, upsampler="nearest+conv", embed_dim=12, depths=(2,), num_heads=(2,)),
        SwinIRConfig(scale=8, upsampler="nearest+conv", embed_dim=12, depths=(2, 2), num_heads=(2, 3)),
        # same-size restoration, greyscale, window 7 => the JPEG models' 255 range
        SwinIRConfig(
            scale=1, upsampler="", embed_dim=12, depths=(2, 1), num_heads=(3, 2), window_size=7, in_chans=1,
            img_range=255.0, mlp_ratio=4.0,
        ),
        SwinIRConfig(scale=1, upsampler="", embed_dim=16, depths=(3,), num_heads=(4,), resi_connection="3conv"),
    ],
    ids=["nearest_x2", "nearest_x8", "jpeg_grey_w7", "denoise_3conv"],
)
def test_other_layouts_match_reference(cfg: SwinIRConfig) -> None:
    ref = _reference(cfg)
    model, detected = load_swinir(ref.state_dict())
    assert detected == cfg
    _compare(ref, model, (2, cfg.in_chans, 13, 19))


def test_prefers_params_ema_and_strips_module_prefix(tmp_path: Path) -> None:
    cfg = CONFIGS["tiny_x4"]
    ref = _reference(cfg)
    ema = {f"module.{k}": v for k, v in ref.state_dict().items()}
    stale = {k: torch.zeros_like(v) for k, v in ema.items()}
    path = tmp_path / "both.pth"
    torch.save({"params": stale, "params_ema": ema}, path)
    model, _ = load_swinir(path)
    _compare(ref, model, (1, 3, 9, 12))


def test_bare_state_dict_without_derived_buffers_loads() -> None:
    cfg = CONFIGS["tiny_x4"]
    ref = _reference(cfg)
    bare = {k: v for k, v in ref.state_dict().items() if not k.endswith(("attn_mask", "relative_position_index"))}
    model, detected = load_swinir(bare)
    assert detected == cfg
    _compare(ref, model, (1, 3, 16, 8))


def test_own_checkpoint_round_trips(tmp_path: Path) -> None:
    model = SwinIR.from_config(CONFIGS["tiny_x4"]).eval()
    path = tmp_path / "ours.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    loaded, cfg = load_swinir(path)
    assert cfg == CONFIGS["tiny_x4"]
    _compare(model, loaded, (1, 3, 11, 17))


def test_unrecognised_checkpoint_names_file_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "esrgan.pth"
    torch.save({"params_ema": {"body.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(FlareError, match=r"esrgan\.pth is not a SwinIR checkpoint.*conv_first\.weight"):
        load_swinir(path)


def test_missing_and_corrupt_files_raise_flare_error(tmp_path: Path) -> None:
    with pytest.raises(FlareError, match="does not exist"):
        load_swinir(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a zip or pickle")
    with pytest.raises(FlareError, match=r"cannot read .*junk\.pth"):
        load_swinir(junk)


def test_shape_contradicting_detection_is_a_flare_error() -> None:
    state = SwinIR.from_config(CONFIGS["tiny_x4"]).state_dict()
    state["layers.1.residual_group.blocks.1.mlp.fc1.weight"] = torch.zeros(7, 30)
    with pytest.raises(FlareError, match="does not fit the detected SwinIR architecture"):
        load_swinir(state)


def test_detect_config_reads_hyper_parameters_from_shapes() -> None:
    cfg = SwinIRConfig(
        scale=3, upsampler="pixelshuffledirect", embed_dim=24, depths=(1, 3, 2), num_heads=(2, 4, 6),
        window_size=4, mlp_ratio=1.5,
    )
    assert detect_config(SwinIR.from_config(cfg).state_dict()) == cfg


def test_config_round_trips_through_json_and_rejects_bad_values() -> None:
    for cfg in CONFIGS.values():
        assert SwinIRConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(FlareError, match="unknown SwinIR configuration keys"):
        SwinIRConfig.from_dict({**CONFIGS["tiny_x4"].to_dict(), "img_size": 64})
    with pytest.raises(FlareError, match="divisible"):
        SwinIRConfig(scale=4, upsampler="pixelshuffle", embed_dim=30, depths=(2,), num_heads=(4,))
    with pytest.raises(FlareError, match="scale 3 is not possible"):
        SwinIRConfig(scale=3, upsampler="nearest+conv", embed_dim=30, depths=(2,), num_heads=(3,))


def test_named_configs_have_paper_hyper_parameters() -> None:
    large = CONFIGS["realsr_l_x4"]
    assert (large.embed_dim, large.depths, large.num_heads, large.resi_connection) == (240, (6,) * 9, (8,) * 9, "3conv")
    assert all(c.window_size == 8 and c.mlp_ratio == 2.0 and c.img_range == 1.0 for c in CONFIGS.values())
    tiny = SwinIR.from_config(CONFIGS["tiny_x4"])
    assert sum(p.numel() for p in tiny.parameters()) < 100_000


def test_batch_items_are_independent_and_sizes_arbitrary() -> None:
    model = SwinIR.from_config(CONFIGS["tiny_x4"]).eval()
    x = torch.rand(2, 3, 12, 21)
    with torch.inference_mode():
        both = model(x)
        single = torch.cat([model(x[:1]), model(x[1:])])
        exact = model(torch.rand(1, 3, 16, 24))
    torch.testing.assert_close(both, single, atol=1e-5, rtol=0)
    assert exact.shape == (1, 3, 64, 96)


def test_too_small_or_wrong_channel_input_is_a_flare_error() -> None:
    model = SwinIR.from_config(CONFIGS["tiny_x4"]).eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 5, 5))  # smallest side reflect padding to 8 allows
        with pytest.raises(FlareError, match="at least 5 pixels"):
            model(torch.rand(1, 3, 4, 30))
        with pytest.raises(FlareError, match=r"\(batch, 3, height, width\)"):
            model(torch.rand(1, 1, 16, 16))


def test_tiny_config_learns() -> None:
    """A few Adam steps on one batch must reduce the loss: gradients reach every parameter."""
    torch.manual_seed(0)
    model = SwinIR.from_config(CONFIGS["tiny_x4"]).train()
    hr = torch.rand(2, 3, 48, 40)
    lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="area")
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        optimiser.zero_grad()
        loss = torch.nn.functional.l1_loss(model(lr), hr)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert losses[-1] < 0.8 * losses[0]


SMALL_NEAREST_3CONV = SwinIRConfig(
    scale=4, upsampler="nearest+conv", embed_dim=16, depths=(2,), num_heads=(2,), resi_connection="3conv", num_feat=8
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter warns it is legacy
@pytest.mark.parametrize(
    ("cfg", "dynamo"),
    [(CONFIGS["tiny_x4"], True), (CONFIGS["tiny_x4"], False), (SMALL_NEAREST_3CONV, False)],
    ids=["tiny_dynamo", "tiny_torchscript", "nearest_3conv_torchscript"],
)
def test_onnx_export_is_dynamic_in_batch_height_width(cfg: SwinIRConfig, dynamo: bool, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if dynamo and torch.__version__ < "2.6":
        pytest.skip("the torch.export-based ONNX exporter with named dynamic dims needs torch >= 2.6")
    torch.manual_seed(0)
    model = SwinIR.from_config(cfg).eval()
    path = tmp_path / "swinir.onnx"
    example = torch.rand(1, 3, 13, 19)
    if dynamo:
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, input_names=["image"], output_names=["upscaled"],
            dynamic_shapes={"x": {0: "batch", 2: "height", 3: "width"}},
        )
    else:
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, input_names=["image"], output_names=["upscaled"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "upscaled": {0: "batch", 2: "height", 3: "width"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 13, 19), (2, 3, 21, 10)]:  # neither side a multiple of the window
        x = torch.rand(*shape)
        with torch.inference_mode():
            expected = model(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
