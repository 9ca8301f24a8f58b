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

from flare.runtime.core.backends import Runner, open_runner
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.core.taxonomy import macro_probabilities
from flare.runtime.foundation.errors import BundleError
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.io.images import load_rgb


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


class Classifier:
    """A classify bundle opened on the best backend available here; close it (or use ``with``)."""

    def __init__(self, bundle: str | Path, backend: str = "auto", spin: bool = True, cuda_graph: bool = False,
                 threads: int | None = None) -> None:
        """Open ``bundle`` on ``backend``; ``spin=False`` when decoding threads share the CPU
        with the model, as in triage, and ``threads`` caps its CPU threads (see
        :func:`flare.runtime.core.backends.open_runner`)."""
        self.bundle = Path(bundle)
        self.manifest: Manifest = Manifest.load(self.bundle)
        if self.manifest.task != "classify" or self.manifest.labels is None:
            raise BundleError(f"{self.bundle} is a bundle for '{self.manifest.task}', not a classifier; make one "
                              "with 'flare export classifier'")
        self.labels: list[str] = self.manifest.labels.classes
        self.macro_of: dict[str, str] = self.manifest.labels.macro_of
        self.spec = PreprocessSpec.from_dict(self.manifest.preprocessing)
        self.input_name = self.manifest.inputs[0].name
        self.output_name = self.manifest.outputs[0].name
        self.outputs_probabilities = self.manifest.extra.get("output_kind") == "probabilities"
        self.runner: Runner = open_runner(self.bundle, self.manifest, backend, spin=spin,
                                           cuda_graph=cuda_graph, threads=threads).activate()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.runner.deactivate()

    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def fingerprint(self) -> str:
        """sha256 of the manifest, which holds the sha256 of every model file (checked on
        opening): two bundles with one fingerprint give the same predictions."""
        return fingerprint_path(self.bundle / Manifest.FILE)

    @property
    def notes(self) -> list[str]:
        """What the backend dropped while starting (shown by ``flare info`` and triage)."""
        return list(self.runner.notes)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A batch as :func:`preprocess` makes it -> (N, C) probabilities, in chunks the backend accepts.

        That is (N, 3, S, S) float32, or (N, S, S, 3) uint8 for a bundle that normalises
        inside its model (``--fuse-preprocess``); the runner refuses anything else by name.
        """
        batch = np.ascontiguousarray(batch)
        step = self.runner.max_batch or max(len(batch), 1)
        outs = [self.runner.infer({self.input_name: batch[i:i + step]})[self.output_name]
                for i in range(0, len(batch), step)]
        out = np.concatenate(outs)
        if out.shape[-1] != len(self.labels):
            raise BundleError(f"model gives {out.shape[-1]} outputs but the manifest names {len(self.labels)} classes")
        return out.astype(np.float32) if self.outputs_probabilities else softmax(out)

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
