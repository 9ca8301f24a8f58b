"""SwinIR image super-resolution (Liang et al., 2021), written for ONNX export.

This is an independent implementation of the SwinIR architecture whose parameter names match
the official release (``models/network_swinir.py`` of JingyunLiang/SwinIR), so the published
checkpoints load unchanged. It differs from the reference code only where that code gets in
the way of exporting one graph that serves every image size:

* the input is reflect-padded to a multiple of the window size inside :meth:`SwinIR.forward`
  and the output is cropped back to ``H*scale x W*scale`` (as the official forward does);
* window partition / reverse and every reshape use sizes read from the runtime tensor, and
  keep the batch and window axes separate, so no batch size is baked in and no symbolic size
  has to be divided by another (which would make torch.export guard on the example shape);
* the shifted-window attention mask is computed once per forward from the padded height and
  width with ``arange`` comparisons, instead of a buffer built for one training image size.
  The official ``attn_mask`` buffers in checkpoint files are therefore ignored on load;
* the body keeps tokens channel-last as ``(B, H, W, C)``, which is the same arithmetic as the
  reference ``(B, H*W, C)`` layout without the flatten / unflatten round trips.

Dropout, stochastic depth and gradient checkpointing are not implemented: the module is meant
for inference, fine-tuning and training small variants, where they matter little. Official
checkpoints do not depend on them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flare.runtime.foundation.errors import FlareError

__all__ = [
    "CONFIGS",
    "RGB_MEAN",
    "SwinIR",
    "SwinIRConfig",
    "detect_config",
    "extract_state_dict",
    "load_swinir",
]

#: Per-channel mean the official models subtract from 3-channel input in [0, 1] (DIV2K RGB mean).
RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)

_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
_RESI_CONNECTIONS = ("1conv", "3conv")
# Buffers the official code stores in its checkpoints although they are pure functions of the
# hyper-parameters (and, for attn_mask, of the training patch size). We recompute them.
_DERIVED_BUFFER_SUFFIXES = (".attn.relative_position_index", ".attn_mask")
# Shifted-window attention adds this to scores between tokens from different image regions.
# It is the reference implementation's value; using it (not -inf) keeps outputs identical.
_MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinIRConfig:
    """Hyper-parameters that fix a SwinIR network's shape and behaviour.

    ``img_size`` from the official code is deliberately absent: it only sized the precomputed
    attention mask, which this implementation derives from each input instead.

    Attributes:
        scale: upscaling factor of the output relative to the input (1 for restoration models).
        upsampler: reconstruction head: ``"pixelshuffle"`` (classical SR), ``"pixelshuffledirect"``
            (lightweight SR), ``"nearest+conv"`` (real-world SR, fewer checkerboard artefacts) or
            ``""`` (same-size restoration: denoising, JPEG artefact removal).
        embed_dim: channels of the transformer body.
        depths: number of Swin blocks in each residual Swin transformer block (RSTB).
        num_heads: attention heads in each RSTB (``embed_dim`` must divide by each).
        window_size: side of the square attention windows; inputs are padded to a multiple of it.
        mlp_ratio: hidden width of each block's MLP relative to ``embed_dim``.
        resi_connection: convolution closing each RSTB and the body: ``"1conv"`` (one 3x3) or
            ``"3conv"`` (3x3 -> 1x1 -> 3x3 bottleneck at ``embed_dim // 4``, used by SwinIR-L).
        in_chans: image channels in and out (3 for RGB, 1 for greyscale).
        img_range: factor applied after mean subtraction (1.0 for SR; 255.0 for the official
            JPEG models, whose weights were trained on that range).
        num_feat: channels of the ``pixelshuffle`` / ``nearest+conv`` heads (64 in every release).
        qkv_bias: whether the query/key/value projection has a bias (True in every release).
    """

    scale: int
    upsampler: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int = 8
    mlp_ratio: float = 2.0
    resi_connection: str = "1conv"
    in_chans: int = 3
    img_range: float = 1.0
    num_feat: int = 64
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store tuples so configs compare and hash by value.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        problem = self._problem()
        if problem:
            raise FlareError(f"invalid SwinIR configuration: {problem}")

    def _problem(self) -> str | None:
        """Say what is wrong with the configuration, or return None when it is usable."""
        if self.upsampler not in _UPSAMPLERS:
            return f"upsampler {self.upsampler!r} is not one of {list(_UPSAMPLERS)}"
        if self.resi_connection not in _RESI_CONNECTIONS:
            return f"resi_connection {self.resi_connection!r} is not one of {list(_RESI_CONNECTIONS)}"
        allowed_scales = {
            "pixelshuffle": "2, 3, 4, 8, 16, ...",
            "pixelshuffledirect": "any integer >= 1",
            "nearest+conv": "2, 4 or 8",
            "": "1",
        }[self.upsampler]
        if not _scale_supported(self.upsampler, self.scale):
            return f"scale {self.scale} is not possible with upsampler {self.upsampler!r} ({allowed_scales})"
        if not self.depths or len(self.depths) != len(self.num_heads):
            return (
                f"depths {list(self.depths)} and num_heads {list(self.num_heads)} must be non-empty and equally long"
            )
        if min(self.depths) < 1:
            return f"every RSTB needs at least one block, got depths {list(self.depths)}"
        if any(h < 1 or self.embed_dim % h for h in self.num_heads):
            return f"embed_dim {self.embed_dim} must be divisible by every num_heads entry {list(self.num_heads)}"
        if self.resi_connection == "3conv" and self.embed_dim < 4:
            return "resi_connection '3conv' needs embed_dim >= 4"
        if self.window_size < 2:
            return f"window_size must be at least 2, got {self.window_size}"
        if self.mlp_ratio <= 0 or self.in_chans < 1 or self.num_feat < 1 or self.img_range <= 0:
            return "mlp_ratio, in_chans, num_feat and img_range must be positive"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (lists, not tuples) that :meth:`from_dict` accepts."""
        data = asdict(self)
        data["depths"] = list(self.depths)
        data["num_heads"] = list(self.num_heads)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SwinIRConfig:
        """Build a config from :meth:`to_dict` output, rejecting unknown keys so typos surface."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlareError(f"unknown SwinIR configuration keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise FlareError(f"incomplete SwinIR configuration: {exc}") from exc


def _scale_supported(upsampler: str, scale: int) -> bool:
    """Return whether the head ``upsampler`` can produce an output ``scale`` times larger."""
    if upsampler == "pixelshuffle":
        return scale == 3 or (scale >= 2 and scale & (scale - 1) == 0)
    if upsampler == "pixelshuffledirect":
        return scale >= 1
    if upsampler == "nearest+conv":
        return scale in (2, 4, 8)
    return scale == 1


def _classical(scale: int) -> SwinIRConfig:
    return SwinIRConfig(scale=scale, upsampler="pixelshuffle", embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6)


def _lightweight(scale: int) -> SwinIRConfig:
    return SwinIRConfig(
        scale=scale, upsampler="pixelshuffledirect", embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4
    )


#: The published SwinIR super-resolution variants, plus ``tiny_x4``: a model small enough to
#: train usefully on a laptop CPU in minutes (two RSTBs of two blocks at 30 channels, with the
#: single-convolution pixel-shuffle head of the lightweight models, the cheapest head).
CONFIGS: dict[str, SwinIRConfig] = {
    "classical_x2": _classical(2),
    "classical_x3": _classical(3),
    "classical_x4": _classical(4),
    "classical_x8": _classical(8),
    "lightweight_x2": _lightweight(2),
    "lightweight_x3": _lightweight(3),
    "lightweight_x4": _lightweight(4),
    "realsr_m_x4": SwinIRConfig(
        scale=4, upsampler="nearest+conv", embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6
    ),
    "realsr_l_x4": SwinIRConfig(
        scale=4,
        upsampler="nearest+conv",
        embed_dim=240,
        depths=(6,) * 9,
        num_heads=(8,) * 9,
        resi_connection="3conv",
    ),
    "tiny_x4": SwinIRConfig(
        scale=4, upsampler="pixelshuffledirect", embed_dim=30, depths=(2, 2), num_heads=(3, 3)
    ),
    "small_x4": SwinIRConfig(
        scale=4, upsampler="pixelshuffledirect", embed_dim=48, depths=(4, 4, 4), num_heads=(6, 6, 6)
    ),
}


# --------------------------------------------------------------------------------------------
# Window helpers. All sizes come from tensor shapes at run time so that exported graphs stay
# dynamic in batch, height and width; only the window size is a constant.
# --------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut ``(B, H, W, C)`` into non-overlapping windows ``(B, nW, window_size**2, C)``.

    H and W must be multiples of ``window_size`` (the model pads its input to guarantee it).
    Batch and window axes stay separate so no reshape has to divide a symbolic size by another.
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // window_size) * (w // window_size), window_size**2, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Invert :func:`window_partition`: ``(B, nW, window_size**2, C)`` back to ``(B, H, W, C)``."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shifted_window_mask(
    h: int, w: int, window_size: int, shift: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive attention mask ``(nW, N, N)`` for shifted windows on a padded ``h x w`` grid.

    After the cyclic shift, windows along the bottom and right edges mix pixels from opposite
    sides of the image. The reference code labels three bands per axis (``[0, h-ws)``,
    ``[h-ws, h-shift)``, ``[h-shift, h)``) and forbids attention between different labels.
    Labels here come from comparisons against ``arange`` so the mask follows any input size.
    """
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    row_band = (rows >= h - window_size).long() + (rows >= h - shift).long()
    col_band = (cols >= w - window_size).long() + (cols >= w - shift).long()
    labels = (row_band[:, None] * 3 + col_band[None, :])[None, :, :, None]
    labels = window_partition(labels, window_size)[0, :, :, 0]  # (nW, N)
    different = labels[:, None, :] != labels[:, :, None]
    return different.to(dtype) * _MASK_VALUE


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the ``(2*ws-1)**2`` bias table for every (query, key) pair of a window.

    Row-major offsets ``(dy + ws - 1) * (2*ws - 1) + (dx + ws - 1)``, where (dy, dx) is the
    query position minus the key position; identical to the buffer in official checkpoints.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (window_size - 1)  # (2, N, N)
    return delta[0] * (2 * window_size - 1) + delta[1]


# --------------------------------------------------------------------------------------------
# Modules. Attribute names mirror the official state-dict keys.
# --------------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent so saved checkpoints keep the official key set (other tools expect it);
        # load_swinir never reads it from a file, it is recomputed here.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attend within windows: ``x`` is ``(B, nW, N, C)``; ``mask`` is ``(nW, N, N)`` or None."""
        b, num_windows = x.shape[0], x.shape[1]
        n = self.window_size * self.window_size
        head_dim = self.dim // self.num_heads
        qkv = self.qkv(x).reshape(b, num_windows, n, 3, self.num_heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, nW, heads, N, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, nW, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, self.num_heads).permute(2, 0, 1)
        if mask is not None:
            attn = attn + mask[:, None]
        # Softmax in fp32 whatever the model's dtype: in an fp16 export its exponentials are
        # what overflows. A no-op for fp32 models.
        attn = attn.float().softmax(dim=-1).to(v.dtype)
        out = (attn @ v).transpose(2, 3).reshape(b, num_windows, n, self.dim)
        return self.proj(out)


class Mlp(nn.Module):
    """Two-layer GELU MLP applied to every token."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform each token independently."""
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """Pre-norm window attention + MLP; odd blocks shift the window grid by half a window."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float, qkv_bias: bool
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Update ``(B, H, W, C)`` tokens; ``mask`` is used only when this block shifts."""
        h, w = x.shape[1], x.shape[2]
        y = self.norm1(x)
        if self.shift_size:
            y = torch.roll(y, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = self.attn(window_partition(y, self.window_size), mask if self.shift_size else None)
        y = window_reverse(windows, self.window_size, h, w)
        if self.shift_size:
            y = torch.roll(y, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """A run of Swin blocks alternating regular and shifted windows (official ``residual_group``)."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, qkv_bias: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, window_size // 2 if i % 2 else 0, mlp_ratio, qkv_bias)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run every block in order on ``(B, H, W, C)`` tokens."""
        for block in self.blocks:
            x = block(x, mask)
        return x


def _residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """Convolution closing an RSTB or the body; '3conv' is SwinIR-L's cheaper bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    return nn.Sequential(
        nn.Conv2d(dim, dim // 4, 3, 1, 1),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
        nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim, 3, 1, 1),
    )


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a convolution, and a skip connection."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        resi_connection: str,
    ) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio, qkv_bias)
        self.conv = _residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Map ``(B, H, W, C)`` tokens to tokens of the same shape."""
        y = self.residual_group(x, mask)
        # contiguous(): a channels-last view would make the convolution's memory format (and
        # so torch.export's guards) depend on the batch size.
        y = self.conv(y.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
        return y + x


class PatchEmbed(nn.Module):
    """Official ``patch_embed`` with patch size 1: only a LayerNorm over channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Turn ``(B, C, H, W)`` features into normalised ``(B, H, W, C)`` tokens."""
        return self.norm(x.permute(0, 2, 3, 1))


class SwinIR(nn.Module):
    """SwinIR with official parameter names, any input size and ONNX-friendly shape logic.

    Input: ``(B, in_chans, H, W)`` images with values in [0, 1] (RGB order for 3 channels).
    Output: ``(B, in_chans, H*scale, W*scale)``, same range, not clamped. H and W need not be
    multiples of the window, but each must be larger than half of it (reflect padding).

    Build from keyword arguments matching :class:`SwinIRConfig` (``SwinIR(**cfg.to_dict())``)
    or with :meth:`from_config`; load released weights with :func:`load_swinir`.
    """

    def __init__(
        self,
        *,
        scale: int,
        upsampler: str,
        embed_dim: int,
        depths: tuple[int, ...] | list[int],
        num_heads: tuple[int, ...] | list[int],
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        resi_connection: str = "1conv",
        in_chans: int = 3,
        img_range: float = 1.0,
        num_feat: int = 64,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        cfg = SwinIRConfig(
            scale=scale,
            upsampler=upsampler,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            resi_connection=resi_connection,
            in_chans=in_chans,
            img_range=img_range,
            num_feat=num_feat,
            qkv_bias=qkv_bias,
        )
        self.config = cfg
        self.scale = cfg.scale
        self.window_size = cfg.window_size
        self.upsampler = cfg.upsampler
        self.img_range = cfg.img_range
        self.register_buffer("mean", _input_mean(in_chans), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, d, h, window_size, mlp_ratio, qkv_bias, resi_connection)
            for d, h in zip(cfg.depths, cfg.num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _residual_conv(embed_dim, resi_connection)
        self._build_head(cfg)
        self.apply(_init_weights)

    def _build_head(self, cfg: SwinIRConfig) -> None:
        """Create the reconstruction modules under the official attribute names."""
        c_in, dim, nf = cfg.in_chans, cfg.embed_dim, cfg.num_feat
        if cfg.upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, nf, 3, 1, 1), nn.LeakyReLU(inplace=True))
        if cfg.upsampler == "pixelshuffle":
            steps: list[nn.Module] = []
            if cfg.scale == 3:
                steps += [nn.Conv2d(nf, 9 * nf, 3, 1, 1), nn.PixelShuffle(3)]
            else:
                for _ in range(int(math.log2(cfg.scale))):
                    steps += [nn.Conv2d(nf, 4 * nf, 3, 1, 1), nn.PixelShuffle(2)]
            self.upsample = nn.Sequential(*steps)
            self.conv_last = nn.Conv2d(nf, c_in, 3, 1, 1)
        elif cfg.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(dim, cfg.scale * cfg.scale * c_in, 3, 1, 1), nn.PixelShuffle(cfg.scale)
            )
        elif cfg.upsampler == "nearest+conv":
            # conv_up1, conv_up2[, conv_up3]: one 2x nearest upsample + conv each.
            self.nearest_steps = int(math.log2(cfg.scale))
            for i in range(1, self.nearest_steps + 1):
                self.add_module(f"conv_up{i}", nn.Conv2d(nf, nf, 3, 1, 1))
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, c_in, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(dim, c_in, 3, 1, 1)

    @classmethod
    def from_config(cls, config: SwinIRConfig) -> SwinIR:
        """Build a randomly initialised network with the given hyper-parameters."""
        return cls(**config.to_dict())

    def reset_derived_buffers(self) -> None:
        """Recompute the buffers that are functions of the hyper-parameters.

        Needed after building on the meta device and materialising with ``to_empty()``, which
        is how :func:`load_swinir` avoids randomly initialising weights it then overwrites
        (seconds for the large variants).
        """
        with torch.no_grad():
            self.mean.copy_(_input_mean(self.config.in_chans))
            for module in self.modules():
                if isinstance(module, WindowAttention):
                    module.relative_position_index.copy_(relative_position_index(module.window_size))

    def _check_input(self, x: torch.Tensor) -> None:
        """Reject inputs reflect padding cannot handle, with a message instead of a torch error."""
        if x.dim() != 4 or x.shape[1] != self.config.in_chans:
            raise FlareError(
                f"SwinIR expects a (batch, {self.config.in_chans}, height, width) tensor, got shape {tuple(x.shape)}"
            )
        minimum = self.window_size // 2 + 1
        if min(x.shape[2], x.shape[3]) < minimum:
            raise FlareError(
                f"image of {x.shape[3]}x{x.shape[2]} pixels is too small for this SwinIR model: "
                f"each side must be at least {minimum} pixels (window size {self.window_size})"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer body on padded ``(B, embed_dim, H, W)`` features, same shape out."""
        h, w = x.shape[2], x.shape[3]
        shift = self.window_size // 2
        mask = shifted_window_mask(h, w, self.window_size, shift, x.dtype, x.device)
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, mask)
        return self.norm(tokens).permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``(B, C, H, W)`` in [0, 1] to ``(B, C, H*scale, W*scale)``."""
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_input(x)
        h, w = x.shape[2], x.shape[3]
        ws = self.window_size
        # Written as round-up-to-multiple so symbolic shape tracing can see the padded size
        # is ws * ceil(h / ws) and the window reshapes need no guard on h % ws.
        padded_h, padded_w = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws
        x = F.pad(x, (0, padded_w - w, 0, padded_h - h), mode="reflect")
        x = (x - self.mean) * self.img_range

        if self.upsampler == "":
            first = self.conv_first(x)
            x = x + self.conv_last(self.conv_after_body(self.forward_features(first)) + first)
        else:
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x)) + x
            if self.upsampler == "pixelshuffle":
                x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
            elif self.upsampler == "pixelshuffledirect":
                x = self.upsample(x)
            else:
                x = self.conv_before_upsample(x)
                for i in range(1, self.nearest_steps + 1):
                    conv = getattr(self, f"conv_up{i}")
                    x = self.lrelu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))
                x = self.conv_last(self.lrelu(self.conv_hr(x)))

        x = x / self.img_range + self.mean
        return x[:, :, : h * self.scale, : w * self.scale]


def _input_mean(in_chans: int) -> torch.Tensor:
    """``(1, C, 1, 1)`` mean subtracted from the input: the DIV2K RGB mean, zero otherwise."""
    mean = RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
    return torch.tensor(mean).reshape(1, in_chans, 1, 1)


def _init_weights(module: nn.Module) -> None:
    """Initialisation from the paper's code: truncated-normal linears, identity LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Checkpoint handling.
# --------------------------------------------------------------------------------------------

_BLOCK_KEY = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def extract_state_dict(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint to a plain state dict with official key names.

    Official and BasicSR files nest the weights under ``params_ema`` (the exponential moving
    average, which the authors evaluate with, so it wins) or ``params``; DataParallel saves add
    a ``module.`` prefix. ``source`` names the file in error messages.
    """
    for wrapper in ("params_ema", "params"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    state: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            state[key.removeprefix("module.")] = value
    if not state:
        raise FlareError(
            f"{source} contains no tensors: expected a SwinIR state dict, bare or under 'params_ema' / 'params'"
        )
    return state


def _count(state: Mapping[str, torch.Tensor], pattern: str, start: int = 0) -> int:
    """Number of consecutive indices ``i`` from ``start`` for which ``pattern.format(i)`` is a key."""
    n = 0
    while pattern.format(start + n) in state:
        n += 1
    return n


def detect_config(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> SwinIRConfig:
    """Infer every SwinIR hyper-parameter from the shapes and names in an (unwrapped) state dict.

    Nothing is stored in official checkpoints except weights, so the architecture is read off
    them: embed_dim and in_chans from ``conv_first``, depths from the block count per layer,
    heads from the bias table's last dimension, window size from its ``(2*ws-1)**2`` rows, MLP
    ratio from ``fc1``, head type and scale from which upsampling modules exist and their
    shapes, and resi_connection from whether ``conv_after_body`` is one conv or a sequence.
    ``img_range`` cannot be read from weights: window size 7 marks the official JPEG models,
    which used 255; everything else used 1.
    """
    sd = state_dict
    table_key = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    if "conv_first.weight" not in sd or table_key not in sd:
        present = ", ".join(sorted(sd)[:5])
        raise FlareError(
            f"{source} is not a SwinIR checkpoint: expected keys 'conv_first.weight' and '{table_key}' "
            f"(official SwinIR naming), found {present}{', ...' if len(sd) > 5 else ''}"
        )
    unsupported = [k for k in ("absolute_pos_embed", "conv_first.1.weight") if k in sd]
    if unsupported:
        raise FlareError(
            f"{source} is a SwinIR variant this loader does not support (has {unsupported[0]!r}); "
            "only the official patch-size-1 models without absolute position embedding load"
        )

    embed_dim, in_chans = int(sd["conv_first.weight"].shape[0]), int(sd["conv_first.weight"].shape[1])
    num_layers = _count(sd, "layers.{}.residual_group.blocks.0.norm1.weight")
    layer_indices = {int(m.group(1)) for k in sd if (m := _BLOCK_KEY.match(k))}
    if num_layers == 0 or layer_indices != set(range(num_layers)):
        raise FlareError(f"{source}: SwinIR layers are not numbered 0..N-1 (found {sorted(layer_indices)})")
    depths = tuple(_count(sd, f"layers.{i}.residual_group.blocks.{{}}.norm1.weight") for i in range(num_layers))
    tables = [sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"] for i in range(num_layers)]
    num_heads = tuple(int(t.shape[1]) for t in tables)
    window_sizes = set()
    for table in tables:
        side = math.isqrt(int(table.shape[0]))
        if side * side != table.shape[0] or side % 2 == 0:
            raise FlareError(f"{source}: relative position bias table has {table.shape[0]} rows, not (2*window-1)**2")
        window_sizes.add((side + 1) // 2)
    if len(window_sizes) != 1:
        raise FlareError(f"{source}: layers disagree on the window size ({sorted(window_sizes)})")
    window_size = window_sizes.pop()
    fc1_key = "layers.0.residual_group.blocks.0.mlp.fc1.weight"
    if fc1_key not in sd:
        raise FlareError(f"{source}: SwinIR block weights are incomplete (no {fc1_key!r})")
    mlp_ratio = int(sd[fc1_key].shape[0]) / embed_dim

    if "conv_after_body.weight" in sd:
        resi_connection = "1conv"
    elif "conv_after_body.0.weight" in sd:
        resi_connection = "3conv"
    else:
        raise FlareError(f"{source}: no 'conv_after_body' weights, so the SwinIR residual connection is unknown")

    num_feat = int(sd["conv_before_upsample.0.weight"].shape[0]) if "conv_before_upsample.0.weight" in sd else 64
    if "conv_up1.weight" in sd:
        upsampler = "nearest+conv"
        scale = 2 ** _count(sd, "conv_up{}.weight", start=1)
    elif "conv_before_upsample.0.weight" in sd:
        upsampler = "pixelshuffle"
        # upsample.0, .2, .4, ...: one conv per PixelShuffle (x3 is a single 9*num_feat conv)
        num_convs = 0
        while f"upsample.{2 * num_convs}.weight" in sd:
            num_convs += 1
        scale = 3 if num_convs == 1 and sd["upsample.0.weight"].shape[0] == 9 * num_feat else 2**num_convs
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        scale = math.isqrt(int(sd["upsample.0.weight"].shape[0]) // in_chans)
    else:
        upsampler, scale = "", 1

    try:
        return SwinIRConfig(
            scale=scale,
            upsampler=upsampler,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            resi_connection=resi_connection,
            in_chans=in_chans,
            img_range=255.0 if window_size == 7 else 1.0,
            num_feat=num_feat,
            qkv_bias="layers.0.residual_group.blocks.0.attn.qkv.bias" in sd,
        )
    except FlareError as exc:
        raise FlareError(f"{source}: the weights describe an {exc}") from exc


def load_swinir(checkpoint: str | Path | Mapping[str, Any]) -> tuple[SwinIR, SwinIRConfig]:
    """Load an official (or our own) SwinIR checkpoint; return the model in eval mode and its config.

    ``checkpoint`` is a path to a ``.pth`` file or an already loaded dict. Files are read with
    ``torch.load(weights_only=True)`` so a checkpoint cannot run code. The architecture is
    detected from the weights (:func:`detect_config`); derived buffers in the file
    (``relative_position_index``, ``attn_mask``) are accepted and ignored.
    """
    if isinstance(checkpoint, Mapping):
        source = "state dict"
        loaded: Any = checkpoint
    else:
        path = Path(checkpoint)
        source = str(path)
        if not path.is_file():
            raise FlareError(f"SwinIR checkpoint {source} does not exist")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt / foreign files
            raise FlareError(f"cannot read {source} as a PyTorch checkpoint: {exc}") from exc
        if not isinstance(loaded, Mapping):
            raise FlareError(f"{source} holds a {type(loaded).__name__}, expected a SwinIR state dict")

    state = extract_state_dict(loaded, source)
    config = detect_config(state, source)
    with torch.device("meta"):
        model = SwinIR.from_config(config)
    model = model.to_empty(device="cpu")
    model.reset_derived_buffers()
    weights = {k: v for k, v in state.items() if not k.endswith(_DERIVED_BUFFER_SUFFIXES)}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a tensor whose shape contradicts the detected architecture
        raise FlareError(f"{source} does not fit the detected SwinIR architecture: {exc}") from exc
    missing = [k for k in missing if not k.endswith(_DERIVED_BUFFER_SUFFIXES)]
    if missing or unexpected:
        raise FlareError(
            f"{source} does not fit the detected SwinIR architecture {config.to_dict()}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval(), config
