"""The runner interface and the choice of backend for a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from runtime.errors import BackendError
from runtime.manifest import Manifest

BACKENDS = ("auto", "tensorrt", "cuda", "cpu", "trt-engine")


class Runner(Protocol):
    """Runs one model: named numpy inputs in, outputs in the manifest's order out."""

    #: Human-readable name of what actually executes, e.g. ``onnxruntime:CPUExecutionProvider``.
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def open_runner(bundle: Path, manifest: Manifest, backend: str = "auto", model_key: str = "model") -> Runner:
    """Open the best backend that really works here for ``manifest.files[model_key]``.

    ``trt-engine`` runs a serialized TensorRT engine from the bundle with TensorRT's own
    Python API; every other choice runs the ONNX file through ONNX Runtime, which then picks
    TensorRT, CUDA or CPU execution providers (see :mod:`runtime.backends.ort_runner`).
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "trt-engine":
        from runtime.backends.trt_runner import TensorRTRunner

        engine = manifest.files.get(f"engine_{model_key}") or manifest.files.get("engine")
        if engine is None:
            raise BackendError(f"{bundle} has no TensorRT engine; re-export with --engine on this GPU")
        return TensorRTRunner(bundle / engine)
    from runtime.backends.ort_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(bundle / manifest.files[model_key], backend=backend,
                             cache_dir=bundle / "trt_cache", fp16=manifest.precision == "fp16")
