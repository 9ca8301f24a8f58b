"""Classifier backbones: any timm model name, plus torchvision's GoogLeNet.

Always built with random weights (nothing is downloaded); a local weights file, when the
user has one, is loaded over them with the classification head dropped where its shape
differs, so ImageNet weights for 1000 classes can seed an 8-class model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from flare.runtime.foundation.errors import ArtifactError, UsageError
from flare.training.checkpoints import load_weights_file, read_torch_file

#: Edge-size backbones that train and run comfortably on a CPU or a Jetson.
EDGE_MODELS = ("resnet18", "mobilenetv3_small_100", "mobilenetv3_large_100", "efficientnet_b0")
#: The paper's four backbones, in timm / torchvision names.
PAPER_MODELS = ("resnet50", "googlenet", "densenet121", "vit_base_patch16_224")


def create_classifier(name: str, num_classes: int, input_size: int | None = None) -> nn.Module:
    """Build ``name`` with a ``num_classes`` head and random weights."""
    if name == "googlenet":
        from torchvision.models import googlenet

        return googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=num_classes)
    import timm

    if not timm.is_model(name):
        raise UsageError(f"unknown model {name!r}: use a timm model name (timm.list_models()) or googlenet")
    if input_size is not None:
        try:  # transformers fix their patch grid at build time; CNNs do not take timm's img_size
            return timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=input_size)
        except TypeError:
            pass
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


#: The end of every refusal of a ``--weights`` file.
WEIGHTS_ADVICE = "re-download or re-save the checkpoint (a state dict in safetensors or a .pth/.pt file)"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load weights from safetensors or a torch file, unwrapping common containers.

    A damaged or foreign file is one ArtifactError naming it (see :mod:`flare.training.checkpoints`).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        state: Any = load_weights_file(path, WEIGHTS_ADVICE)
    else:
        state = read_torch_file(path, WEIGHTS_ADVICE)
    for key in ("state_dict", "model", "params_ema", "params", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ArtifactError(f"{path} holds a {type(state).__name__}, not a state dict of weights; {WEIGHTS_ADVICE}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def load_weights(model: nn.Module, path: Path) -> dict[str, int]:
    """Load a local weights file, skipping tensors whose shape differs (the old head).

    Refuses a file that matches less than half of the model, which means it was made for
    another architecture.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) / 2:
        raise ArtifactError(
            f"{path} matches only {len(usable)} of {len(own)} tensors of this model, so it was saved from another "
            f"architecture; pass weights of the --model being trained, or {WEIGHTS_ADVICE}"
        )
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": len(state) - len(usable), "missing": len(own) - len(usable)}
