"""ONNX Runtime runner, choosing execution providers that really work on this machine.

``onnxruntime.get_available_providers()`` lists what the installed package was *built* with,
not what can start here (a CUDA build on a machine without the CUDA libraries still lists
CUDA). So we ask for the providers in order (TensorRT, CUDA, CPU) and read back what the
session actually uses; a provider that fails to start is dropped with a note.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from runtime.errors import BackendError, FlareError

_PREFERENCE = {
    "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
_SHORT = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda",
          "CPUExecutionProvider": "cpu"}


def import_onnxruntime():
    """Import ONNX Runtime or say how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise FlareError(
            "running a bundle needs ONNX Runtime: pip install 'flare-edge[cpu]' "
            "(or 'flare-edge[gpu]' on an NVIDIA machine)"
        ) from exc
    return onnxruntime


def installed_onnxruntime_packages() -> list[str]:
    """Which ONNX Runtime distributions are installed (more than one breaks each other)."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


class OnnxRuntimeRunner:
    """One ONNX model in an ``InferenceSession`` on the best provider that starts."""

    def __init__(self, model: Path, backend: str = "auto", cache_dir: Path | None = None,
                 fp16: bool = False, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        self.notes: list[str] = []
        wanted = [p for p in _PREFERENCE[backend] if p in ort.get_available_providers()]
        if backend != "auto" and _PREFERENCE[backend][0] not in wanted:
            raise BackendError(
                f"backend {backend} is not available in this ONNX Runtime build "
                f"({', '.join(ort.get_available_providers())}); install flare-edge[gpu] on a CUDA machine"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = []
        for p in wanted:
            if p == "TensorrtExecutionProvider":
                trt_opts = {"trt_fp16_enable": fp16}
                if cache_dir is not None:
                    trt_opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
                providers.append((p, trt_opts))
            else:
                providers.append(p)
        self.session = self._start(ort, model, options, providers)
        active = self.session.get_providers()
        if backend != "auto" and _PREFERENCE[backend][0] not in active:
            raise BackendError(f"backend {backend} could not start here (running on {active[0]})")
        self.provider = active[0]
        self.name = f"onnxruntime:{_SHORT.get(self.provider, self.provider)}"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _start(self, ort, model: Path, options, providers: list):
        """Create the session, dropping accelerated providers that fail to initialise."""
        while True:
            try:
                return ort.InferenceSession(str(model), sess_options=options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError/Fail for any provider failure
                if len(providers) <= 1:
                    raise BackendError(f"ONNX Runtime cannot load {model}: {exc}") from exc
                dropped = providers.pop(0)
                self.notes.append(f"{dropped if isinstance(dropped, str) else dropped[0]} failed: {exc}")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)
