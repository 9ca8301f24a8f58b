"""Which torch device a command runs on, and mixed precision on it.

``--device`` is checked for its form when the command line is parsed (:mod:`flare.runtime.foundation.options`);
here it is checked against the machine, so ``cuda`` on a machine without a usable GPU is a
clear usage error instead of a CUDA traceback in the middle of training.
"""

from __future__ import annotations

import torch

from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.options import parse_device


def available_devices() -> list[str]:
    """The devices usable here, for error messages (``cpu`` always)."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu", *cuda]


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` (a CUDA GPU when usable, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    try:
        spec = parse_device(device)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from exc
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    here = ", ".join(available_devices())
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is usable on this machine (devices here: {here}); "
                         "use --device cpu or auto")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: there is no such GPU (devices here: {here})")
    return torch.device(f"cuda:{index}")


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on GPUs that have it, fp16 otherwise; off on CPU (slower there)."""
    if not enabled or device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
