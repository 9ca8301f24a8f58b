"""The runner interface every backend implements (:mod:`flare.runtime.core.backends.open` picks one).

Shaped like Polygraphy's runners: a runner is made cheaply, :meth:`Runner.activate`
allocates (an ONNX Runtime session, a TensorRT context and stream), :meth:`Runner.infer`
takes and returns named numpy arrays, :meth:`Runner.deactivate` frees, and the runner is a
context manager doing both. Inputs are checked against the bundle's manifest (names, dtype,
rank, fixed dimensions, a symbolic dimension taking one value across inputs, the batch limit)
before anything runs, so a wrong feed is a clear error instead of a backend's stack trace.
That check is only as good as the manifest, so on activation the model's own inputs and
outputs are compared with it (:meth:`Runner.check_model_specs`): an edited manifest is
refused before any feed passes it and then fails inside the backend. What a backend dropped
while starting (a CUDA provider that failed to load) is kept in :attr:`Runner.notes` for
``flare info`` and the triage summary to show.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from flare.runtime.core.manifest import TensorSpec
from flare.runtime.foundation.errors import BackendError, BundleError, UsageError

class Runner(ABC):
    """One model file of a bundle, run on one backend."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int | None = None,
                 specs_from: str = "the manifest") -> None:
        self.inputs, self.outputs = list(inputs), list(outputs)
        #: Where ``inputs`` and ``outputs`` come from (a bundle's manifest.json), for messages.
        self.specs_from = specs_from
        #: The largest batch this runner accepts (None: no limit); callers split bigger batches.
        self.max_batch = max_batch
        #: What was dropped or changed while starting, for a person to read.
        self.notes: list[str] = []
        self.is_active = False

    #: What actually executes, e.g. ``onnxruntime:cpu``; set by :meth:`activate`.
    name: str = "inactive"

    def activate(self) -> Runner:
        """Allocate what inference needs; idempotent."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Free what :meth:`activate` allocated; idempotent."""
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on checked ``feeds``; returns outputs by name, in the manifest's order."""
        if not self.is_active:
            raise BackendError(f"{type(self).__name__} is not active; use it as a context manager or call activate()")
        self.check_inputs(feeds)
        return self._infer(feeds)

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        """Refuse feeds that do not fit the manifest, naming the input and what was expected."""
        expected = {t.name for t in self.inputs}
        missing, unexpected = sorted(expected - set(feeds)), sorted(set(feeds) - expected)
        if missing or unexpected:
            raise UsageError(f"model inputs are {sorted(expected)}; missing {missing}, unexpected {unexpected}")
        symbols: dict[str, tuple[int, str]] = {}
        for spec in self.inputs:
            array = feeds[spec.name]
            if not isinstance(array, np.ndarray):
                raise UsageError(f"input {spec.name} must be a numpy array, not {type(array).__name__}")
            if array.dtype != np.dtype(spec.dtype):
                raise UsageError(f"input {spec.name} must be {spec.dtype}, not {array.dtype}")
            if array.ndim != len(spec.shape):
                raise UsageError(f"input {spec.name} must have {len(spec.shape)} dimensions {spec.shape}, "
                                 f"got shape {array.shape}")
            for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
                if isinstance(want, int) and want >= 0 and want != got:
                    raise UsageError(f"input {spec.name} must have shape {spec.shape}; axis {axis} is {got}")
                if isinstance(want, str):
                    seen = symbols.setdefault(want, (got, spec.name))
                    if seen[0] != got:
                        raise UsageError(f"dimension {want!r} is {seen[0]} in {seen[1]} but {got} in {spec.name}")
            if array.ndim and array.shape[0] < 1:
                raise UsageError(f"input {spec.name} has an empty batch")
            if self.max_batch is not None and array.ndim and array.shape[0] > self.max_batch:
                raise UsageError(f"input {spec.name} has a batch of {array.shape[0]}, over this model's limit of "
                                 f"{self.max_batch}; split the batch (or rebuild the engine with a larger --max-batch)")

    def check_model_specs(self, model: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        """Refuse a model whose own inputs or outputs contradict the specs this runner checks feeds with.

        ``inputs`` and ``outputs`` are what the backend reads from the model file ``model``.
        Names, dtypes and ranks must agree; a fixed dimension of the model must be the same
        in the specs, where a symbolic one (``"batch"``) may be anything. A fixed dimension
        in the specs where the model's is symbolic is fine: the specs only narrow it.
        """
        for kind, want, have in (("input", self.inputs, inputs), ("output", self.outputs, outputs)):
            by_name = {t.name: t for t in have}
            if set(by_name) != {t.name for t in want}:
                raise BundleError(f"{self.specs_from} lists {kind}s {[t.name for t in want]} but {model} has "
                                  f"{[t.name for t in have]}; re-export the bundle")
            for spec in want:
                found = by_name[spec.name]
                fits = spec.dtype == found.dtype and len(spec.shape) == len(found.shape) and all(
                    not isinstance(f, int) or w == f for w, f in zip(spec.shape, found.shape))
                if not fits:
                    raise BundleError(f"{self.specs_from} says {kind} '{spec.name}' is {_describe(spec)} but {model} "
                                      f"has {_describe(found)}; re-export the bundle")

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _describe(spec: TensorSpec) -> str:
    """A tensor's shape and dtype as a person reads them: ``[batch,3,64,64] float32``."""
    return f"[{','.join(str(d) for d in spec.shape)}] {spec.dtype}"
