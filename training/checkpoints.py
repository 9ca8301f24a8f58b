"""Weights and training state on disk: safetensors for weights, no code execution on load.

Weights go to safetensors (no pickle at all). Optimizer, scheduler and EMA state are nested
dicts of tensors and numbers, saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and
plain containers, so a planted ``train_state.pt`` cannot run code on ``--resume``. Both are
written atomically, so a killed run leaves the previous complete file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flare.runtime.atomic import write_atomically, write_text
from flare.runtime.errors import FlareError


def save_weights(model: nn.Module, path: Path) -> Path:
    """The model's weights as safetensors, written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return write_atomically(path, lambda p: save_file(state, str(p)))


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict, with a readable error for a damaged file."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type is not importable portably
        raise FlareError(f"cannot read weights {path} ({exc}); the file is damaged or not safetensors") from exc


def save_state(state: dict[str, Any], path: Path) -> Path:
    """Training state (optimizer, scheduler, epoch...), written atomically."""
    return write_atomically(path, lambda p: torch.save(state, p))


def load_state(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Training state saved by :func:`save_state`; refuses anything that would run code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FlareError(f"{path} holds objects other than tensors and plain values, so it was not written by "
                         "flare-edge; refusing to unpickle it (that could run code). Start the run afresh") from exc
    except (OSError, EOFError, RuntimeError) as exc:
        raise FlareError(f"cannot read training state {path} ({exc}); start the run afresh") from exc


class EpochLog:
    """``metrics.jsonl``: one JSON object per finished epoch, rewritten atomically each time.

    Opened for a run resuming after epoch ``keep``, it keeps exactly the first ``keep``
    epochs, so the log always matches the checkpoint it sits beside.
    """

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if keep and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and row.get("epoch", keep + 1) <= keep:
                    self.rows.append(row)
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
