"""The parity gate: an export is only written when ONNX Runtime agrees with PyTorch.

Figures: max absolute difference, max relative difference (to the largest reference
magnitude, so near-zero logits do not blow it up) and top-1 agreement. Tolerances depend on
precision: fp32 must match closely; fp16 and int8 are judged mainly by top-1 agreement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.foundation.errors import FlareError, UsageError

#: precision -> (max relative difference, min top-1 agreement)
TOLERANCES = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.97), "int8": (float("inf"), 0.85)}
#: Images (super-resolution): precision -> (min PSNR in dB, max absolute difference), both on
#: outputs clipped to the [0, 1] range that is written to files. One 8-bit level is 1/255;
#: fp32 differs by float rounding only; fp16 must stay well under a visible difference.
IMAGE_TOLERANCES = {"fp32": (60.0, 2e-3), "fp16": (40.0, 0.1)}


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
    #: Images only: PSNR of the candidate against the reference (peak 1.0).
    psnr_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.3f}"
        if self.psnr_db is not None:
            return (f"parity on {self.samples} {self.inputs}: PSNR {self.psnr_db:.1f} dB, max abs "
                    f"{self.max_abs_diff:.2e} -> {'PASS' if self.passed else 'FAIL'}")
        return (f"parity on {self.samples} {self.inputs}: max abs {self.max_abs_diff:.2e}, "
                f"max rel {self.max_rel_diff:.2e}{top1} -> {'PASS' if self.passed else 'FAIL'}")


@dataclass
class GateReport:
    """The gate of a bundle of several models: it passes when every part passes."""

    parts: dict[str, ParityReport]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parts.values())

    @property
    def tolerance(self) -> dict[str, dict[str, float]]:
        return {name: r.tolerance for name, r in self.parts.items()}

    def summary(self) -> str:
        failed = [name for name, r in self.parts.items() if not r.passed]
        verdict = "PASS" if not failed else f"FAIL ({', '.join(failed)})"
        return f"parity of {len(self.parts)} parts ({', '.join(self.parts)}) -> {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "parts": {name: r.to_dict() for name, r in self.parts.items()}}


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


def psnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR in dB of ``candidate`` against ``reference``, both in [0, 1] (peak 1); inf when equal."""
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def compare_images(pairs: list[tuple[np.ndarray, np.ndarray]], precision: str, inputs: str,
                   backend: str) -> ParityReport:
    """Compare PyTorch and ONNX image batches ``(reference, candidate)`` of any sizes.

    Both are clipped to [0, 1], the range an enhanced image is written in; PSNR pools the
    squared error of every pixel of every batch, max abs is the worst pixel. A NaN or Inf
    anywhere fails the gate.
    """
    finite = all(bool(np.isfinite(c).all()) for _, c in pairs)
    for ref, cand in pairs:
        if ref.shape != cand.shape:
            raise ParityError(f"ONNX output shape {cand.shape} differs from PyTorch {ref.shape}")
    refs = np.concatenate([np.clip(r, 0, 1).ravel() for r, _ in pairs])
    cands = np.concatenate([np.clip(np.nan_to_num(c, nan=2.0), 0, 1).ravel() for _, c in pairs])
    max_abs = float(np.abs(refs - cands).max()) if finite else float("inf")
    # JSON has no infinity: identical outputs are reported as 200 dB, non-finite ones as 0 dB
    psnr = min(psnr_db(refs, cands), 200.0) if finite else 0.0
    min_psnr, abs_tol = IMAGE_TOLERANCES[precision]
    return ParityReport(compared="pytorch fp32 vs onnxruntime " + precision, inputs=inputs,
                        samples=sum(r.shape[0] for r, _ in pairs), max_abs_diff=max_abs, max_rel_diff=max_abs,
                        top1_agreement=None, tolerance={"min_psnr_db": min_psnr, "max_abs_diff": abs_tol},
                        passed=finite and psnr >= min_psnr and max_abs <= abs_tol, backend=backend, psnr_db=psnr)


#: How a part's gate judges its cases: ``(pairs, precision, backend) -> report``, the pairs being PyTorch fp32's
#: output and ONNX Runtime's on each case (see :class:`flare.export.pipeline.PartSpec`).
Judge = Callable[[list[tuple[np.ndarray, np.ndarray]], str, str], ParityReport]


def judge_outputs(inputs: str, classify: bool = True) -> Judge:
    """Outputs pooled over every case, by :func:`compare` (``classify``: logits, so top-1 agreement counts too)."""
    def judge(pairs: list[tuple[np.ndarray, np.ndarray]], precision: str, backend: str) -> ParityReport:
        return compare(np.concatenate([r for r, _ in pairs]), np.concatenate([c for _, c in pairs]), precision,
                       inputs, backend, classify=classify)
    return judge


def judge_images(inputs: str, signed: bool = False) -> Judge:
    """Image batches by :func:`compare_images`; ``signed`` images (in [-1, 1], a VAE's) are mapped to [0, 1] first."""
    def judge(pairs: list[tuple[np.ndarray, np.ndarray]], precision: str, backend: str) -> ParityReport:
        if signed:
            pairs = [((r + 1) / 2, (c + 1) / 2) for r, c in pairs]
        return compare_images(pairs, precision, inputs, backend)
    return judge


def run_onnx(path: Path, feeds: dict[str, np.ndarray], batch: int = 16) -> tuple[np.ndarray, str]:
    """First output of an ONNX model on CPU, in batches (the gate must not need a GPU)."""
    from flare.export.onnx_export import tensor_specs
    from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner

    inputs, outputs = tensor_specs(path)
    with OnnxRuntimeRunner(Path(path), inputs, outputs, RunnerOptions("cpu")) as runner:
        n = next(iter(feeds.values())).shape[0]
        first = outputs[0].name
        results = [runner.infer({k: v[i:i + batch] for k, v in feeds.items()})[first] for i in range(0, n, batch)]
        return np.concatenate(results), runner.name


def sample_images(calib: Path | None, data: Path | None, samples: int) -> tuple[list[np.ndarray], str]:
    """Up to ``samples`` real images (HxWx3 uint8) spread over ``--calib`` or else the run's
    ``data`` folder, and a phrase saying where they came from.

    Synthetic sky is the last resort, and the phrase says so: a gate on made-up images
    proves less than one on the user's own.
    """
    from flare.runtime.io.images import list_images, load_rgb

    folder, where = (calib, f"images from {calib}") if calib is not None else \
        (data, f"images from the run's data {data}")
    if folder is not None:
        if not Path(folder).is_dir():
            raise UsageError(f"{folder} is not a folder of images; pass --calib DIR")
        files = list_images(Path(folder))[0]
        if not files:
            raise UsageError(f"{folder} holds no images; pass --calib DIR")
        chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(samples, len(files))).astype(int)]
        return [load_rgb(Path(folder) / f) for f in chosen], where
    from flare.training.data.synth import render

    rng = np.random.default_rng(0)
    return [render(name, rng, 256) for name in ("galaxy", "nebula", "star")], \
        "synthetic sky images (no data given: pass --calib DIR to check on real images)"
