"""The one resume prologue of the three trainers: a RUN folder is continued or started, never mixed.

``flare train``, ``train-sr`` and ``train-diffusion`` each keep their settings in ``RUN/run.json``
and what ``--resume`` needs (the last weights and the optimizer state) beside it. Before any
work, the same questions are asked of every RUN:

1. the command (:func:`check_resumed_options`): does ``--resume`` come with options that differ
   from the run's own? Refused, since a resumed run continues with its own settings.
2. the trainer (:meth:`RunFolder.open`): does the folder already hold a run? Then ``--resume`` is
   needed. Is there a state to resume from? Then the run's own settings are taken (a
   ``run.json`` of another kind of run is refused by its loader) and the state is read, before
   anything is written, so a damaged state changes nothing.

Each epoch then ends with :meth:`RunFolder.save` (or the trainer's own staging of the same
files), and a resume restores from them with :meth:`RunFolder.restore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
import torch
from torch import nn

from flare.runtime.core.runs import (ClassifierRun, ClassifierTraining, DiffusionRun, DiffusionTraining, SRRun,
                                     SRTraining)
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.options import check_resume
from flare.runtime.foundation.progress import log
from flare.training.checkpoints import (RESUME_ADVICE, TrainingState, load_model_weights, load_state, restore_parts,
                                        save_state, save_weights)

#: The settings of one of the three runs; a resume returns the same kind it was given.
Settings = TypeVar("Settings", ClassifierTraining, SRTraining, DiffusionTraining)
TrainingRun = ClassifierRun | SRRun | DiffusionRun


def check_resumed_options(ctx: click.Context, out: Path, run_type: type[TrainingRun], same: tuple[str, ...],
                          **renamed: str | None) -> None:
    """With ``--resume`` on a run in ``out``, refuse options typed now that differ from the run's settings.

    ``same`` names the command's parameters kept under the same name in the run's settings,
    ``renamed`` maps the others to the field that keeps them, or to None for one the settings
    do not keep (then any value typed with ``--resume`` is refused, as it would be ignored).
    """
    if not ctx.params["resume"] or not (Path(out) / run_type.FILE).is_file():
        return
    kept = run_type.load(out).train
    fields = {**{name: name for name in same}, **renamed}
    check_resume(ctx, out, {name: None if field is None else getattr(kept, field) for name, field in fields.items()})


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's randomness: from (seed, epoch) alone, so a resumed run continues exactly."""
    return seed * 100_003 + epoch


class RunFolder:
    """A RUN folder: its ``run.json`` and, in ``state_dir`` (RUN itself by default), the resume state.

    The resume state is ``last.safetensors`` (the weights after the last finished epoch) and
    ``train_state.pt`` (optimizer, scheduler and the like, with that ``epoch``).
    """

    def __init__(self, out: Path, run_type: type[TrainingRun], state_dir: Path | None = None) -> None:
        self.out, self.run_type = Path(out), run_type
        state_dir = self.out if state_dir is None else Path(state_dir)
        self.last, self.state_path = state_dir / "last.safetensors", state_dir / "train_state.pt"

    def open(self, cfg: Settings, resume: bool, device: torch.device,
             restart_unstarted: bool = False) -> tuple[Settings, TrainingState | None]:
        """The settings to train with and, for ``--resume``, the saved state (None: start fresh).

        A resume keeps the run's own settings except ``epochs``, which may grow. Without a
        state, ``--resume`` is refused, or, with ``restart_unstarted`` (a run whose first
        epoch never finished has nothing worth keeping), the run starts from the beginning.
        """
        if resume and not self.state_path.is_file():
            if not restart_unstarted:
                raise UsageError(f"--resume: {self.out} has no checkpoint to resume from")
            log(f"--resume: {self.out} has no finished epoch yet; starting it from the beginning")
            resume = False
        if not resume:
            if self.state_path.exists():
                raise UsageError(f"{self.out} already holds a run; pass --resume to continue it or choose another "
                                 f"--out")
            return cfg, None
        requested = cfg.epochs
        kept = self.run_type.load(self.out).train
        kept.epochs = max(kept.epochs, requested)
        return kept, load_state(self.state_path, device)

    def restore(self, state: TrainingState, model: nn.Module, model_desc: str, parts: Mapping[str, Any]) -> int:
        """Load the last weights into ``model`` and each saved part into its object; the epoch to train next.

        ``model_desc`` names the model the weights should fit, for the refusal of a file that
        does not (see :func:`~flare.training.checkpoints.load_model_weights`).
        """
        load_model_weights(model, self.last, model_desc, RESUME_ADVICE)
        restore_parts(state, parts)
        return state["epoch"] + 1

    def save(self, model: nn.Module, state: dict[str, Any], improved: bool) -> None:
        """End an epoch: ``best.safetensors`` when it improved, ``last.safetensors``, then the state.

        The state goes last, so a resume never finds a state newer than the weights beside it.
        """
        if improved:
            save_weights(model, self.out / "best.safetensors")
        save_weights(model, self.last)
        save_state(state, self.state_path)
