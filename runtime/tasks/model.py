"""The base of every task's runtime model: a bundle opened, checked and run, once for all tasks.

:class:`BundleModel` reads and checks the manifest (every file's checksum, the manifest's
own, its internal consistency: :meth:`flare.runtime.core.manifest.Manifest.validate`),
refuses a bundle of another task by saying which command makes the right one, opens each
model file's runner when first needed (so a generate bundle never starts the text encoder
for class prompts) and checks on activation that the model agrees with the manifest
(:meth:`flare.runtime.core.backends.base.Runner.check_model_specs`). It also owns closing,
the backend's name, the fingerprint and the notes. :class:`~flare.runtime.tasks.classify.Classifier`,
:class:`~flare.runtime.tasks.enhance.Enhancer` and :class:`~flare.runtime.tasks.generate.Generator`
add only what their task means.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from flare.runtime.core.backends.base import Runner
from flare.runtime.core.backends.open import open_runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.tasks import Task, task_named
from flare.runtime.foundation.errors import BundleError
from flare.runtime.foundation.fingerprint import fingerprint_path

M = TypeVar("M", bound="BundleModel")

#: Opens a model file by its manifest role on something other than this folder's file (a
#: Triton server's model, called from its Python backend: see :mod:`flare.runtime.apps.serving`).
PartOpener = Callable[[str], Runner]


class BundleModel:
    """A bundle of task ``TASK`` opened with :class:`RunnerOptions`; close it (or use ``with``)."""

    #: The manifest task this class runs (a key of :data:`flare.runtime.core.tasks.TASKS`).
    TASK: ClassVar[str]
    #: Files besides the model files that the model reads itself (checked even when a server holds the models).
    LOCAL_FILES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, bundle: str | Path, options: RunnerOptions = RunnerOptions(),
                 open_part: PartOpener | None = None) -> None:
        """``open_part`` replaces the bundle's model files by other runners; the folder then needs
        only its manifest and :attr:`LOCAL_FILES`."""
        self.bundle = Path(bundle)
        self.task: Task = task_named(self.TASK)
        self.manifest: Manifest = self.load_manifest(self.bundle, verify_models=open_part is None)
        self.options = options
        self._open_part = open_part
        self._runners: dict[str, Runner] = {}

    @classmethod
    def load_manifest(cls, bundle: Path, verify_models: bool = True) -> Manifest:
        """The manifest of ``bundle`` once it is checked to be of this task, with its files'
        checksums (only :attr:`LOCAL_FILES` without ``verify_models``): what opening checks,
        for callers that need the manifest before they run anything (the Ray driver)."""
        manifest = Manifest.load(bundle, verify=verify_models)
        if not verify_models:
            manifest.verify(bundle, [r for r in cls.LOCAL_FILES if r in manifest.files])
        mine, wanted = task_named(manifest.task), task_named(cls.TASK)
        if mine is not wanted:
            raise BundleError(f"{bundle} is a bundle for '{mine.name}', not {wanted.what}; make one with "
                              f"'{wanted.made_by}'")
        return manifest

    def __enter__(self: M) -> M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free every runner opened so far; the model may be used again (runners reopen)."""
        for runner in self._runners.values():
            runner.deactivate()
        self._runners.clear()

    @property
    def runner(self) -> Runner:
        """The active runner of the main model file (the classifier, the SR model, the UNet)."""
        return self.runner_for(self.task.parts[0])

    def runner_for(self, part: str) -> Runner:
        """The active runner of model file ``part``, started on first use."""
        if part not in self._runners:
            runner = (self._open_part(part) if self._open_part is not None
                      else open_runner(self.bundle, self.manifest, self.options, part))
            runner.activate()
            try:
                if part == self.task.parts[0]:
                    self.task.check_io(self.manifest)
            except BundleError as exc:
                runner.deactivate()
                raise BundleError(f"{self.bundle / Manifest.FILE}: {exc}; the file was edited or is damaged: "
                                  f"{Manifest.remedy()}") from exc
            self._runners[part] = runner
        return self._runners[part]

    def run_part(self, part: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output of ``part`` for ``feeds``, in chunks the runner accepts (its batch limit)."""
        runner = self.runner_for(part)
        n = len(next(iter(feeds.values())))
        step = runner.max_batch or max(n, 1)
        outs = [runner.infer({k: np.ascontiguousarray(v[i:i + step]) for k, v in feeds.items()})[runner.outputs[0].name]
                for i in range(0, n, step)]
        return np.concatenate(outs)

    @property
    def backend(self) -> str:
        """What runs the main model file here, e.g. ``onnxruntime:cpu``."""
        return self.runner.name

    @property
    def fingerprint(self) -> str:
        """sha256 of the manifest, which holds the sha256 of every model file (checked on
        opening): two bundles with one fingerprint give the same outputs."""
        return fingerprint_path(self.bundle / Manifest.FILE)

    @property
    def notes(self) -> list[str]:
        """What the backends dropped while starting (shown by ``flare info`` and triage)."""
        return [note for runner in self._runners.values() for note in runner.notes]

    @classmethod
    def describe(cls, manifest: Manifest) -> list[str]:
        """The task's own lines of ``flare info`` (``name        text``), after the common ones."""
        return []
