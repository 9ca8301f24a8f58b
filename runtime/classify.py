"""Classification with a bundle: preprocessing from the manifest, batched inference, top-k.

This is the torch-free path a telescope-side machine runs. :class:`Classifier` satisfies
:class:`runtime.triage.Predictor`, so folder triage and ``flare classify`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from runtime.backends import open_runner
from runtime.errors import BundleError
from runtime.imageio import load_rgb
from runtime.manifest import Manifest, read_manifest
from runtime.preprocess import PreprocessSpec, preprocess


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
    """A classify bundle opened on the best backend available here."""

    def __init__(self, bundle: str | Path, backend: str = "auto") -> None:
        self.bundle = Path(bundle)
        self.manifest: Manifest = read_manifest(self.bundle)
        if self.manifest.task != "classify":
            raise BundleError(f"{self.bundle} is a {self.manifest.task} bundle, not a classifier")
        assert self.manifest.labels is not None  # guaranteed by Manifest.from_dict for classify
        self.labels: list[str] = self.manifest.labels.classes
        self.macro_of: dict[str, str] = self.manifest.labels.macro_of
        self.spec = PreprocessSpec.from_dict(self.manifest.preprocessing)
        self.runner = open_runner(self.bundle, self.manifest, backend)
        self.input_name = self.manifest.inputs[0].name
        self.outputs_probabilities = self.manifest.extra.get("output_kind") == "probabilities"

    @property
    def backend(self) -> str:
        return self.runner.name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 -> (N, C) probabilities."""
        out = self.runner.run({self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        if out.shape[-1] != len(self.labels):
            raise BundleError(f"model gives {out.shape[-1]} outputs but the manifest names {len(self.labels)} classes")
        return out.astype(np.float32) if self.outputs_probabilities else softmax(out)

    def macro_probabilities(self, probs: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Sum fine probabilities into their macro classes (the 4-class roll-up)."""
        macros = sorted(set(self.macro_of[c] for c in self.labels))
        m = np.zeros((len(self.labels), len(macros)), dtype=np.float32)
        for i, c in enumerate(self.labels):
            m[i, macros.index(self.macro_of[c])] = 1.0
        return macros, probs @ m

    def classify_files(self, paths: Iterable[str | Path], top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Decode, preprocess and classify files; a bad file raises ImageDecodeError naming it."""
        paths = [Path(p) for p in paths]
        results: list[Prediction] = []
        k = max(1, min(top_k, len(self.labels)))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            batch = np.stack([preprocess(load_rgb(p, stretch=self.spec.stretch), self.spec) for p in chunk])
            probs = self.predict(batch)
            macros, macro_probs = self.macro_probabilities(probs)
            for p, row, mrow in zip(chunk, probs, macro_probs):
                order = np.argsort(-row)[:k]
                j = int(np.argmax(mrow))
                results.append(Prediction(str(p), [(self.labels[i], float(row[i])) for i in order],
                                          macros[j], float(mrow[j])))
        return results
