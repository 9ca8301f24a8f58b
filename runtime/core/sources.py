"""What a command was given as its model: a bundle, a training RUN, a local pipeline, or a name,
and the task that makes of it, decided once for ``flare bench`` and the other commands.

A bundle says its task in its manifest; a RUN by its kind (the registry's ``run`` of each task);
a local diffusers pipeline folder (``model_index.json``) is a generate source. A name that is
no path belongs to the task whose names (``names_by_task``, which the caller knows: SwinIR's
configurations, the named diffusion configurations) hold it, and otherwise to ``default``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from flare.runtime.core.artifact import identify
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.tasks import TASKS
from flare.runtime.foundation.errors import UsageError

#: The file that marks a local diffusers pipeline folder.
PIPELINE_FILE = "model_index.json"


def source_task(text: str, names_by_task: Mapping[str, Collection[str]], default: str) -> str:
    """The task of the model ``text`` names (a folder or a name); ``default`` when nothing says
    otherwise, so that the default task's own checks refuse it with their message."""
    path = Path(text)
    if path.is_dir():
        if (path / Manifest.FILE).is_file():
            return Manifest.load(path, verify=False).task
        kind = identify(path)
        if kind is not None:
            return next((t.name for t in TASKS.values() if t.run == kind.KIND), default)
        return next((t.name for t in TASKS.values() if t.pipeline and (path / PIPELINE_FILE).is_file()), default)
    if not path.exists():
        return next((task for task, names in names_by_task.items() if text in names), default)
    return default


def require_task(text: str, task: str) -> None:
    """Refuse a source that is not ``task``'s, naming the command that does take it.

    The export commands call this first, so ``flare export classifier SR_RUN`` says to use
    ``flare export sr`` rather than failing later on a missing checkpoint or field.
    """
    path = Path(text)
    if path.is_dir() and (path / Manifest.FILE).is_file():
        raise UsageError(f"{path} is already a bundle ({TASKS[source_task(text, {}, task)].what}); "
                         f"'{TASKS[task].made_by}' takes a training RUN, a checkpoint or a model name")
    found = source_task(text, {}, default=task)
    if found != task:
        raise UsageError(f"{path} is a source for '{found}', not '{task}': export it with '{TASKS[found].made_by}'")
