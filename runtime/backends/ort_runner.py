"""ONNX Runtime runner, choosing execution providers that really work on this machine.

``onnxruntime.get_available_providers()`` lists what the installed package was *built* with,
not what can start here (a CUDA build on a machine without the CUDA libraries still lists
CUDA). So we ask for the providers in order (TensorRT, CUDA, CPU) and read back what the
session actually uses. A provider that raises while the session starts is dropped and the
session retried; one that ONNX Runtime silently leaves out is noticed by comparing what was
asked for with what runs. Both end up in :attr:`Runner.notes`, never swallowed.

Once a session runs, the inputs and outputs it reports are checked against the specs the
runner was given (a bundle's manifest): see :meth:`Runner.check_model_specs`.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.artifacts import TensorSpec, quote_error
from flare.runtime.backends.base import Runner
from flare.runtime.errors import BackendError, MissingExtraError

_PREFERENCE = {
    "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}
_SHORT = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda",
          "CPUExecutionProvider": "cpu"}
#: ONNX Runtime's element types as numpy dtype names (what manifests record).
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(bfloat16)": "bfloat16", "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
           "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
           "tensor(uint64)": "uint64", "tensor(bool)": "bool", "tensor(string)": "object"}


def import_onnxruntime() -> Any:
    """Import ONNX Runtime or say how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError("running a bundle (ONNX Runtime)", "cpu") from exc
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


class OnnxRuntimeRunner(Runner):
    """One ONNX model in an ``InferenceSession`` on the best provider that starts."""

    def __init__(self, model: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], backend: str = "auto",
                 cache_dir: Path | None = None, fp16: bool = False, threads: int | None = None,
                 max_batch: int | None = None, specs_from: str = "the manifest", spin: bool = True) -> None:
        super().__init__(inputs, outputs, max_batch, specs_from)
        #: Whether idle CPU threads spin-wait for the next op (ONNX Runtime's default): fastest
        #: alone, but it takes the cores that decoding threads running beside it need.
        self.spin = spin
        if backend not in _PREFERENCE:
            raise BackendError(f"ONNX Runtime has no backend {backend!r}; choose one of {', '.join(_PREFERENCE)}")
        self.model, self.backend, self.cache_dir, self.fp16, self.threads = Path(model), backend, cache_dir, fp16, threads
        self.session: Any = None
        self.provider = ""

    def _activate(self) -> None:
        ort = import_onnxruntime()
        self.notes = []
        built = ort.get_available_providers()
        wanted = [p for p in _PREFERENCE[self.backend] if p in built]
        if self.backend != "auto" and _PREFERENCE[self.backend][0] not in wanted:
            raise BackendError(f"backend {self.backend} is not in this ONNX Runtime build ({', '.join(built)}); "
                               "install flare-edge[gpu] on a CUDA machine")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers: list[Any] = []
        for p in wanted:
            if p == "TensorrtExecutionProvider":
                trt_opts: dict[str, Any] = {"trt_fp16_enable": self.fp16}
                if self.cache_dir is not None:
                    trt_opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(self.cache_dir))
                providers.append((p, trt_opts))
            else:
                providers.append(p)
        self.session = self._start(ort, options, providers)
        active = self.session.get_providers()
        for p in wanted:
            if p not in active and not any(p in note for note in self.notes):
                self.notes.append(f"{p} was requested but ONNX Runtime did not start it (its libraries or GPU "
                                  "are missing here; ONNX Runtime's log says why)")
        if self.backend != "auto" and _PREFERENCE[self.backend][0] not in active:
            raise BackendError(f"backend {self.backend} could not start here (running on {active[0]}); "
                               + "; ".join(self.notes))
        self.check_model_specs(self.model.name, [_spec(a) for a in self.session.get_inputs()],
                               [_spec(a) for a in self.session.get_outputs()])
        self.provider = active[0]
        self.name = f"onnxruntime:{_SHORT.get(self.provider, self.provider)}"
        self._output_names = [o.name for o in self.session.get_outputs()]

    def _start(self, ort: Any, options: Any, providers: list[Any]) -> Any:
        """Create the session, dropping accelerated providers that fail to initialise."""
        while True:
            try:
                return ort.InferenceSession(str(self.model), sess_options=options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError/Fail for any provider failure
                if len(providers) <= 1:
                    raise BackendError(f"ONNX Runtime cannot load {self.model} ({quote_error(exc)}); the file is damaged "
                                       "or needs a newer onnxruntime: re-export the bundle or upgrade onnxruntime") from exc
                dropped = providers.pop(0)
                name = dropped if isinstance(dropped, str) else dropped[0]
                self.notes.append(f"{name} failed to start and was dropped: {' '.join(str(exc).split())}")

    def _deactivate(self) -> None:
        self.session = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))


def _spec(arg: Any) -> TensorSpec:
    """An ONNX Runtime ``NodeArg`` as a spec: unknown dims (None) become ``"?"``, like a symbolic one."""
    return TensorSpec(name=arg.name, shape=["?" if d is None else d for d in arg.shape],
                      dtype=_DTYPES.get(arg.type, arg.type))
