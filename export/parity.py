"""The parity gate: an export is only written when ONNX Runtime agrees with PyTorch.

Figures: max absolute difference, max relative difference (to the largest reference
magnitude, so near-zero logits do not blow it up) and top-1 agreement. Tolerances depend on
precision: fp32 must match closely; fp16 and int8 are judged mainly by top-1 agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.errors import FlareError

#: precision -> (max relative difference, min top-1 agreement)
TOLERANCES = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.97), "int8": (float("inf"), 0.85)}


class ParityError(FlareError):
    """The export disagrees with PyTorch beyond tolerance."""


@dataclass
class ParityReport:
    compared: str
    inputs: str
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float | None
    tolerance: dict[str, float]
    passed: bool
    backend: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.3f}"
        return (f"parity on {self.samples} {self.inputs}: max abs {self.max_abs_diff:.2e}, "
                f"max rel {self.max_rel_diff:.2e}{top1} -> {'PASS' if self.passed else 'FAIL'}")


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str, inputs: str,
            backend: str, classify: bool = True) -> ParityReport:
    """Compare PyTorch ``reference`` with ONNX ``candidate`` outputs under ``precision``'s tolerance."""
    if reference.shape != candidate.shape:
        raise ParityError(f"ONNX output shape {candidate.shape} differs from PyTorch {reference.shape}")
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    diff = np.abs(ref - cand)
    finite = bool(np.isfinite(cand).all())
    max_abs = float(diff.max()) if finite else float("inf")
    max_rel = max_abs / max(float(np.abs(ref).max()), 1e-12)
    rel_tol, top1_tol = TOLERANCES[precision]
    top1 = float((ref.argmax(-1) == cand.argmax(-1)).mean()) if classify else None
    passed = finite and max_rel <= rel_tol and (top1 is None or top1 >= top1_tol)
    return ParityReport(compared="pytorch fp32 vs onnxruntime " + precision, inputs=inputs,
                        samples=int(reference.shape[0]), max_abs_diff=max_abs, max_rel_diff=max_rel,
                        top1_agreement=top1, tolerance={"max_rel_diff": rel_tol, "min_top1_agreement": top1_tol},
                        passed=passed, backend=backend)


def run_onnx(path: Path, feeds: dict[str, np.ndarray], batch: int = 16) -> tuple[np.ndarray, str]:
    """First output of an ONNX model on CPU, in batches (the gate must not need a GPU)."""
    from flare.export.onnx_export import tensor_specs
    from flare.runtime.backends.ort_runner import OnnxRuntimeRunner

    inputs, outputs = tensor_specs(path)
    with OnnxRuntimeRunner(Path(path), inputs, outputs, backend="cpu") as runner:
        n = next(iter(feeds.values())).shape[0]
        first = outputs[0].name
        results = [runner.infer({k: v[i:i + batch] for k, v in feeds.items()})[first] for i in range(0, n, batch)]
        return np.concatenate(results), runner.name
