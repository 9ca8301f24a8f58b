"""Classification with a bundle: preprocessing from the manifest, batched inference, top-k.

This is the torch-free path a telescope-side machine runs. :class:`Classifier` satisfies
:class:`flare.runtime.apps.triage.Predictor`, so folder triage and ``flare classify`` share it,
and both take the macro class from :func:`flare.runtime.core.taxonomy.macro_probabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.core.taxonomy import macro_probabilities
from flare.runtime.foundation.errors import BundleError
from flare.runtime.io.images import load_rgb
from flare.runtime.tasks.model import BundleModel


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable probabilities, returned as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Prediction:
    """Top-k classes of one image plus its macro roll-up."""

    path: str
    top: list[tuple[str, float]]
    macro: str
    macro_probability: float

    def to_dict(self) -> dict:
        return {"path": self.path, "class": self.top[0][0], "confidence": self.top[0][1],
                "macro_class": self.macro, "macro_confidence": self.macro_probability,
                "top": [{"class": c, "probability": p} for c, p in self.top]}


class Classifier(BundleModel):
    """A classify bundle: preprocessing from its manifest, probabilities, top-k and the macro roll-up."""

    TASK = "classify"

    def __init__(self, bundle: str | Path, options: RunnerOptions = RunnerOptions()) -> None:
        """Open ``bundle`` and start its model (so a backend that cannot run it fails here);
        triage passes ``spin=False`` (decoding threads share the CPU with the model)."""
        super().__init__(bundle, options)
        assert self.manifest.labels is not None  # the manifest's check requires labels for this task
        self.labels: list[str] = self.manifest.labels.classes
        self.macro_of: dict[str, str] = self.manifest.labels.macro_of
        self.spec = PreprocessSpec.from_dict(self.manifest.preprocessing)
        self.outputs_probabilities = self.manifest.extra.get("output_kind") == "probabilities"
        self.runner.activate()  # start now: a backend that cannot run the model fails on opening

    @classmethod
    def describe(cls, manifest: Manifest) -> list[str]:
        pre = manifest.preprocessing
        return [f"preprocess  {pre.get('size')} px {pre.get('interpolation')}, mean {pre.get('mean')}, "
                f"std {pre.get('std')}, FITS {pre.get('stretch', {}).get('kind')} stretch"]

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """The model's own (N, C) outputs for a batch as :func:`preprocess` makes it, in chunks the
        backend accepts: logits, or probabilities where :attr:`outputs_probabilities` says so.

        That is (N, 3, S, S) float32, or (N, S, S, 3) uint8 for a bundle that normalises
        inside its model (``--fuse-preprocess``); the runner refuses anything else by name.
        ``flare distill`` takes these rather than :meth:`predict`'s, so a teacher's logits keep
        what a softmax would round away.
        """
        out = self.run_part("model", {self.manifest.inputs[0].name: batch})
        if out.shape[-1] != len(self.labels):
            raise BundleError(f"model gives {out.shape[-1]} outputs but the manifest names {len(self.labels)} classes")
        return out.astype(np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A batch as :func:`preprocess` makes it -> (N, C) probabilities (see :meth:`scores`)."""
        out = self.scores(batch)
        return out if self.outputs_probabilities else softmax(out)

    def classify_files(self, paths: Iterable[str | Path], top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Decode, preprocess and classify files; a bad file raises ImageDecodeError naming it."""
        paths = [Path(p) for p in paths]
        results: list[Prediction] = []
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, len(self.labels))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            batch = np.stack([preprocess(load_rgb(p, stretch=self.spec.stretch), self.spec) for p in chunk])
            probs = self.predict(batch)
            macros, macro_probs = macro_probabilities(probs, self.labels, self.macro_of)
            for p, row, mrow in zip(chunk, probs, macro_probs):
                order = np.argsort(-row)[:k]
                j = int(np.argmax(mrow))
                results.append(Prediction(str(p), [(self.labels[i], float(row[i])) for i in order],
                                          macros[j], float(mrow[j])))
        return results
