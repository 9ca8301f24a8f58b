"""Weights and training state on disk: safetensors for weights, no code execution on load.

Weights go to safetensors (no pickle at all). Optimizer, scheduler and EMA state are nested
dicts of tensors and numbers, saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and
plain containers, so a planted ``train_state.pt`` cannot run code on ``--resume``. Both are
written atomically, so a killed run leaves the previous complete file.

Every reader turns a missing, truncated, foreign or mismatched file into one
:class:`~flare.runtime.foundation.errors.ArtifactError` whose one-line message names the file and says
what to do; torch's own messages span lines and advise ``weights_only=False``, which is the
one thing not to do here.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flare.runtime.core.artifact import quote_error
from flare.runtime.foundation.atomic import write_atomically, write_text
from flare.runtime.foundation.errors import ArtifactError

#: What to do when the state a resume needs cannot be used: it is all or nothing.
RESUME_ADVICE = "start the run afresh: re-run without --resume, with a new --out"
#: What to do about a RUN's damaged weights, whether they are read to resume or to use the run.
RUN_WEIGHTS_ADVICE = "copy the run again, or re-train it (without --resume, into a new --out)"


def save_weights(model: nn.Module, path: Path) -> Path:
    """The model's weights as safetensors, written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return write_atomically(path, lambda p: save_file(state, str(p)))


def load_weights_file(path: Path, advice: str = RUN_WEIGHTS_ADVICE) -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict; a missing or damaged file is an ArtifactError.

    ``advice`` ends the message, because what to do depends on what the file is for (a
    resume starts afresh, a finished run is re-trained); the default fits a RUN's weights.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"weights {path} are missing; {advice}")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type is not importable portably
        raise ArtifactError(f"cannot read weights {path} ({quote_error(exc)}): the file is truncated, damaged or "
                            f"not safetensors; {advice}") from exc


def describe_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """How the state dict ``found`` differs from a model's ``expected`` one, in a few words.

    Empty when it fits. torch's own message lists every key on its own line, which for a
    file made for another model is hundreds of lines.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [k for k in expected if k in found and tuple(expected[k].shape) != tuple(found[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unknown tensor(s) (e.g. {unexpected[0]})")
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} tensor(s) of another shape (e.g. {k} is {list(found[k].shape)} in the file, "
                     f"{list(expected[k].shape)} in the model)")
    return ", ".join(parts)


def load_model_weights(model: nn.Module, path: Path, model_desc: str, advice: str) -> None:
    """Load the safetensors file ``path`` into ``model``, refusing a file made for another model.

    ``model_desc`` names the model the file should fit (for example "the resnet18 with 8
    classes in RUN/run.json"), ``advice`` says what to do when it does not or is damaged.
    """
    state = load_weights_file(path, advice)
    mismatch = describe_mismatch(model.state_dict(), state)
    if mismatch:
        raise ArtifactError(f"{path} was trained for another model than {model_desc}: {mismatch}; {advice}")
    model.load_state_dict(state)


def save_state(state: dict[str, Any], path: Path) -> Path:
    """Training state (optimizer, scheduler, epoch...), written atomically."""
    return write_atomically(path, lambda p: torch.save(state, p))


def read_torch_file(path: Path, advice: str, device: torch.device | str = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of ``path``; every failure is one ArtifactError naming it.

    torch raises ``UnpicklingError``, ``RuntimeError``, ``EOFError`` or ``KeyError`` for a
    damaged file, depending on where the damage is. An ``UnpicklingError`` also means the
    file holds objects other than tensors and plain values, which are never unpickled here.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; {advice}")
    try:
        with warnings.catch_warnings():  # about the pickle protocol of a file we are about to refuse
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ArtifactError(f"{path} is damaged or holds objects other than tensors and plain values; refusing to "
                            f"unpickle it (that could run code); {advice}") from exc
    except Exception as exc:  # noqa: BLE001 - see above: the type tells where the damage is, not what to do
        raise ArtifactError(f"cannot read {path}: the file is truncated, damaged or not a PyTorch file; "
                            f"{advice}") from exc


class TrainingState(dict[str, Any]):
    """A loaded training state; reading an entry it lacks is an ArtifactError naming the file.

    The trainers index the state directly (``state["optimizer"]``), so a state written by
    another kind of run, or edited, ends in one line saying what to do instead of a KeyError.
    """

    def __init__(self, path: Path, entries: Mapping[str, Any]) -> None:
        super().__init__(entries)
        self.path = Path(path)

    def __missing__(self, key: str) -> Any:
        raise ArtifactError(f"{self.path} has no {key!r} entry: it was written by another kind of run or is "
                            f"damaged; {RESUME_ADVICE}")


def load_state(path: Path, device: torch.device | str = "cpu") -> TrainingState:
    """Training state saved by :func:`save_state`, for ``--resume``; refuses anything that would run code.

    Every trainer's state records the last finished ``epoch``; a file without one is not a
    training state, whatever else it holds.
    """
    state = read_torch_file(path, RESUME_ADVICE, device)
    if not isinstance(state, dict) or type(state.get("epoch")) is not int:
        raise ArtifactError(f"{path} is not a flare-edge training state (it records no finished epoch); "
                            f"{RESUME_ADVICE}")
    return TrainingState(path, state)


def restore_parts(state: TrainingState, parts: Mapping[str, Any]) -> None:
    """Load each saved part of ``state`` (optimizer, scheduler, EMA...) into its object, by key.

    A part saved for another model (other parameter groups or shapes) makes torch raise
    ``ValueError``, ``KeyError`` or ``RuntimeError`` from deep inside; here it is one
    ArtifactError naming the file and the part.
    """
    for key, target in parts.items():
        saved = state[key]
        try:
            target.load_state_dict(saved)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
            raise ArtifactError(f"{state.path}: the saved {key} state does not fit this run ({quote_error(exc)}); "
                                f"{RESUME_ADVICE}") from exc


class EpochLog:
    """``metrics.jsonl``: one JSON object per finished epoch, rewritten atomically each time.

    Opened for a run resuming after epoch ``keep``, it keeps exactly the first ``keep``
    epochs, so the log always matches the checkpoint it sits beside. Lines that cannot be
    read (a torn last line, foreign bytes) are dropped: the log is a record, not a state.
    """

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if keep and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                epoch = row.get("epoch") if isinstance(row, dict) else None
                if type(epoch) is int and epoch <= keep:
                    self.rows.append(row)
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
