"""fp16 wrappers for export: half arithmetic inside, fp32 tensors at the bundle's edges.

Callers feed an fp16 bundle the same float32 arrays as an fp32 one, and get float32 back,
so preprocessing and postprocessing never depend on the precision. Layers whose fp16
arithmetic overflows or loses too much (LayerNorm's variance over hundreds of channels) can
be kept in fp32 inside the otherwise-half graph.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Float32LayerNorm(nn.Module):
    """A LayerNorm computed in fp32 on half inputs: its mean and variance are what overflow."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().float(), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.shape, self.weight, self.bias, self.eps).to(x.dtype)


def _keep_layernorms_fp32(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.LayerNorm) and child.elementwise_affine:
            setattr(module, name, Float32LayerNorm(child))
        else:
            _keep_layernorms_fp32(child)


class HalfPrecision(nn.Module):
    """fp16 weights and arithmetic inside, fp32 in and out.

    ``fp32_layernorm`` keeps every LayerNorm in fp32 (transformers such as SwinIR: a
    classifier's BatchNorms fold into convolutions and need nothing).
    """

    def __init__(self, model: nn.Module, fp32_layernorm: bool = False) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half()
        if fp32_layernorm:
            _keep_layernorms_fp32(self.model)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        half = [x.half() if x.is_floating_point() else x for x in inputs]
        return self.model(*half).float()


def in_precision(model: nn.Module, fp32_layernorm: bool = False) -> Callable[[str], nn.Module]:
    """``model`` as a bundle part exports it in a precision: fp16 inside :class:`HalfPrecision` (made
    only when asked for, so the half copy of a large model lives no longer than its export), fp32 and int8
    (quantized after export) as it is."""
    return lambda precision: HalfPrecision(model, fp32_layernorm) if precision == "fp16" else model
