"""Tiled inference: coverage, memory bound, and agreement with whole-image inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flare.runtime.core.tiling import tile_starts
from flare.runtime.foundation.errors import FlareError
from flare.training.sr.swinir import CONFIGS, SwinIR
from flare.training.sr.tiling import sr_tiled


class Recorder(nn.Module):
    """Wraps a model and remembers the input shape of every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.window_size = getattr(model, "window_size", 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.model(x)


class LocalConvSR(nn.Module):
    """x2 SR whose output depends on input pixels at most 2 away (two 3x3 convolutions)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def tiny() -> SwinIR:
    torch.manual_seed(0)
    return SwinIR.from_config(CONFIGS["tiny_x4"]).eval()


@pytest.mark.parametrize(("tile", "overlap", "max_tol", "mean_tol"), [(16, 4, 0.3, 0.02), (16, 8, 0.08, 0.005)])
def test_tiled_swinir_close_to_whole_image(
    tiny: SwinIR, tile: int, overlap: int, max_tol: float, mean_tol: float
) -> None:
    image = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = tiny(image)
    tiled = sr_tiled(tiny, image, 4, tile, overlap)
    assert tiled.shape == whole.shape == (1, 3, 160, 208)
    diff = (tiled - whole).abs()
    assert diff.max() < max_tol and diff.mean() < mean_tol, (diff.max().item(), diff.mean().item())


def test_tiles_never_exceed_tile_size(tiny: SwinIR) -> None:
    recorder = Recorder(tiny)
    sr_tiled(recorder, torch.rand(1, 3, 40, 52), 4, 16, 4)
    # window-aligned stride 8: rows start at 0, 8, 16, 24; columns at 0, 8, ..., 32, 40
    assert len(recorder.shapes) == 4 * 6
    assert max(s[2] for s in recorder.shapes) <= 16 and max(s[3] for s in recorder.shapes) <= 16
    assert min(min(s[2], s[3]) for s in recorder.shapes) >= 16 - 8 + 1  # no slivers


@pytest.mark.parametrize("size", [(40, 52), (23, 37), (16, 50)])
def test_local_model_is_reproduced_exactly(size: tuple[int, int]) -> None:
    """Receptive field 2 <= overlap / 4 => blending must reproduce whole-image inference."""
    model = LocalConvSR().eval()
    image = torch.rand(1, 3, *size)
    with torch.inference_mode():
        whole = model(image)
    recorder = Recorder(model)
    tiled = sr_tiled(recorder, image, 2, 12, 8)
    assert len(recorder.shapes) > 1
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_image_smaller_than_tile_and_tile_zero_run_once(tiny: SwinIR) -> None:
    image = torch.rand(1, 3, 10, 13)
    with torch.inference_mode():
        whole = tiny(image)
    for tile in (0, 16):
        recorder = Recorder(tiny)
        out = sr_tiled(recorder, image, 4, tile, 4)
        assert recorder.shapes == [(1, 3, 10, 13)]
        torch.testing.assert_close(out, whole, atol=0, rtol=0)


def test_one_axis_smaller_than_tile(tiny: SwinIR) -> None:
    image = torch.rand(1, 3, 10, 40)
    recorder = Recorder(tiny)
    out = sr_tiled(recorder, image, 4, 16, 8)
    assert out.shape == (1, 3, 40, 160) and torch.isfinite(out).all()
    assert {s[2] for s in recorder.shapes} == {10} and max(s[3] for s in recorder.shapes) <= 16


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(40, 16, 4, 8), (52, 16, 4, 8), (53, 16, 8, 8), (100, 24, 6, 1), (17, 16, 0, 1), (16, 16, 4, 8)],
)
def test_tile_starts_cover_with_overlap(length: int, tile: int, overlap: int, align: int) -> None:
    starts = tile_starts(length, tile, overlap, align)
    ends = [min(s + tile, length) for s in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert all(s % align == 0 for s in starts)
    assert all(e - s <= tile for s, e in zip(starts, ends, strict=True))
    assert all(prev_end - start >= overlap for prev_end, start in zip(ends[:-1], starts[1:], strict=True))


def test_bad_arguments_are_flare_errors(tiny: SwinIR) -> None:
    image = torch.rand(1, 3, 40, 40)
    with pytest.raises(FlareError, match="overlap"):
        sr_tiled(tiny, image, 4, 16, 16)
    with pytest.raises(FlareError, match="window size"):
        sr_tiled(tiny, image, 4, 12, 6)  # stride 6 cannot start tiles on 8-pixel windows
    with pytest.raises(FlareError, match="is the scale right"):
        sr_tiled(tiny, image, 2, 16, 4)
