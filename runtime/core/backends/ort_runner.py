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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.artifact import quote_error
from flare.runtime.core.backends.base import Runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import TensorSpec
from flare.runtime.foundation.errors import BackendError, MissingExtraError, UsageError

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

    def __init__(self, model: Path, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 options: RunnerOptions = RunnerOptions(), cache_dir: Path | None = None, fp16: bool = False,
                 max_batch: int | None = None, specs_from: str = "the manifest",
                 trt_profile: dict[str, str] | None = None, trt_max_batch: int | None = None,
                 io_binding: bool | None = None, graph_blockers: list[str] | None = None) -> None:
        super().__init__(inputs, outputs, max_batch, specs_from)
        if options.backend not in _PREFERENCE:
            raise BackendError(f"ONNX Runtime has no backend {options.backend!r}; choose one of {', '.join(_PREFERENCE)}")
        #: ``spin``: whether idle CPU threads spin-wait for the next op (ONNX Runtime's default):
        #: fastest alone, but it takes the cores that decoding threads running beside it need.
        self.options = options
        self.model, self.cache_dir, self.fp16 = Path(model), cache_dir, fp16
        #: The TensorRT provider's ``trt_profile_{min,opt,max}_shapes`` (see flare.runtime.core.engines).
        self.trt_profile = dict(trt_profile or {})
        #: The profile's largest batch: the limit while the TensorRT provider runs the model.
        self.trt_max_batch = trt_max_batch
        #: Ops of the model a CUDA graph cannot capture (control flow), from the manifest.
        self.graph_blockers = list(graph_blockers or [])
        #: Keep inputs and outputs in bound buffers: None binds on the CUDA provider only.
        self.io_binding = io_binding
        self.session: Any = None
        self.provider = ""
        self._io: DeviceIO | None = None
        self._graphs = False

    def _activate(self) -> None:
        ort = import_onnxruntime()
        self.notes = []
        built = ort.get_available_providers()
        wanted = [p for p in _PREFERENCE[self.options.backend] if p in built]
        if self.options.backend != "auto" and _PREFERENCE[self.options.backend][0] not in wanted:
            raise BackendError(f"backend {self.options.backend} is not in this ONNX Runtime build ({', '.join(built)}); "
                               "install flare-edge[gpu] on a CUDA machine")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.threads:
            session_options.intra_op_num_threads = self.options.threads
        if not self.options.spin:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        graphs = self._wants_graphs()
        providers: list[Any] = []
        for p in wanted:
            if p == "TensorrtExecutionProvider":
                providers.append((p, self._trt_options()))
            elif p == "CUDAExecutionProvider" and graphs:
                providers.append((p, {"enable_cuda_graph": "1"}))
            else:
                providers.append(p)
        self.session = self._start(ort, session_options, providers)
        active = self.session.get_providers()
        for p in wanted:
            if p not in active and not any(p in note for note in self.notes):
                self.notes.append(f"{p} was requested but ONNX Runtime did not start it (its libraries or GPU "
                                  "are missing here; ONNX Runtime's log says why)")
        if self.options.backend != "auto" and _PREFERENCE[self.options.backend][0] not in active:
            raise BackendError(f"backend {self.options.backend} could not start here (running on {active[0]}); "
                               + "; ".join(self.notes))
        self.check_model_specs(self.model.name, [_spec(a) for a in self.session.get_inputs()],
                               [_spec(a) for a in self.session.get_outputs()])
        self.provider = active[0]
        self.name = f"onnxruntime:{_SHORT.get(self.provider, self.provider)}"
        self._output_names = [o.name for o in self.session.get_outputs()]
        on_cuda = self.provider == "CUDAExecutionProvider"
        self._graphs = graphs and on_cuda
        if self.provider == "TensorrtExecutionProvider" and self.trt_max_batch:
            self.max_batch = min(self.max_batch or self.trt_max_batch, self.trt_max_batch)
        if self.io_binding or (self.io_binding is None and on_cuda):
            self._io = DeviceIO(ort, self.session, "cuda" if on_cuda else "cpu", self._graphs, self.notes)

    def _wants_graphs(self) -> bool:
        """Whether to ask for CUDA graphs; a request the provider cannot honour becomes a note."""
        if not self.options.cuda_graph:
            return False
        if self.options.backend != "cuda":
            self.notes.append("--cuda-graph needs --backend cuda (every node on the CUDA provider); running without")
            return False
        if self.graph_blockers:
            self.notes.append(f"--cuda-graph: {self.model.name} has {', '.join(self.graph_blockers)} nodes, which a "
                              "CUDA graph cannot hold; running without")
            return False
        return True

    def _trt_options(self) -> dict[str, Any]:
        """TensorRT provider options: precision, the bundle's profile, engine and timing caches."""
        options: dict[str, Any] = {"trt_fp16_enable": self.fp16, **self.trt_profile}
        if self.cache_dir is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(self.cache_dir),
                           trt_timing_cache_enable=True, trt_timing_cache_path=str(self.cache_dir))
        return options

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
        self.session = self._io = None

    @property
    def device(self) -> str:
        """Where the session's tensors live: ``cuda`` on the CUDA or TensorRT provider, else ``cpu``."""
        return "cuda" if self.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"

    def to_device(self, array: np.ndarray) -> Any:
        """``array`` copied into an ``OrtValue`` on this runner's device, for :meth:`infer_values`."""
        return import_onnxruntime().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    def infer_values(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run on values that stay on the device: each feed an ``OrtValue`` (used where it is) or a
        numpy array (copied over); the outputs are ``OrtValue`` s on the device, which the next call
        (this model or another on the same device) takes as they are. ``.numpy()`` brings one home."""
        if not self.is_active:
            raise BackendError(f"{type(self).__name__} is not active; use it as a context manager or call activate()")
        expected = {t.name for t in self.inputs}
        if set(feeds) != expected:
            raise UsageError(f"model inputs are {sorted(expected)}, not {sorted(feeds)}")
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, self.device)
        options = ort.RunOptions()
        if self._graphs:  # new buffers each call: never capture or replay a CUDA graph here
            options.add_run_config_entry("gpu_graph_id", "-1")
        try:
            self.session.run_with_iobinding(binding, options)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises plain RuntimeError / Fail
            raise BackendError(f"ONNX Runtime failed on {self.model.name}: {quote_error(exc)}") from exc
        return dict(zip(self._output_names, binding.get_outputs()))

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._io is not None:
            return self._io.run(feeds)
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))


class DeviceIO:
    """A session's inputs and outputs in bound buffers at fixed addresses (ONNX Runtime IO binding).

    Without binding, the CUDA provider allocates and copies every input and output on each
    ``run``. Here each set of input shapes gets one slot: input buffers on the device that
    later calls overwrite in place, and output buffers found on the slot's first run and
    then kept. Fixed addresses are also what a CUDA graph needs: with ``graphs``, each slot
    after its first run gets a ``gpu_graph_id`` and ONNX Runtime captures it on the next
    run and replays it after; up to :attr:`MAX_GRAPHS` shapes, later ones run uncaptured
    (a note says so). A capture that fails turns graphs off for the runner, with a note.
    """

    MAX_GRAPHS = 8
    #: Shapes kept bound at once; the least recently used uncaptured one goes first (an
    #: enhancement of many image sizes would otherwise hold device memory for each).
    MAX_SLOTS = 16

    def __init__(self, ort: Any, session: Any, device: str, graphs: bool, notes: list[str]) -> None:
        self.ort, self.session, self.device, self.graphs, self.notes = ort, session, device, graphs, notes
        self._outputs = [o.name for o in session.get_outputs()]
        self._slots: OrderedDict[tuple, _Slot] = OrderedDict()
        self._graph_ids = 0

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple((name, array.shape, array.dtype.str) for name, array in sorted(feeds.items()))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._first_run(feeds)
            self._evict()
        else:
            self._slots.move_to_end(key)
            for name, value in slot.inputs.items():
                value.update_inplace(np.ascontiguousarray(feeds[name]))
            try:
                self.session.run_with_iobinding(slot.binding, slot.options)
            except Exception as exc:  # noqa: BLE001 - a failed capture is ORT's plain RuntimeError
                if slot.graph_id < 0:
                    raise BackendError(f"ONNX Runtime failed: {quote_error(exc)}") from exc
                self._stop_graphs(exc)
                self.session.run_with_iobinding(slot.binding, slot.options)
        outputs = [value.numpy() for value in slot.binding.get_outputs()]
        if self.device == "cpu":  # a host buffer's array is a view the next run overwrites
            outputs = [array.copy() for array in outputs]
        return dict(zip(self._outputs, outputs))

    def _first_run(self, feeds: dict[str, np.ndarray]) -> _Slot:
        """Bind the inputs, run uncaptured to learn the output shapes, then bind fixed outputs."""
        binding = self.session.io_binding()
        # copies: a host OrtValue wraps the array it is given, and later calls write into it
        inputs = {name: self.ort.OrtValue.ortvalue_from_numpy(np.array(array, order="C", copy=True), self.device, 0)
                  for name, array in feeds.items()}
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name in self._outputs:
            binding.bind_output(name, self.device)
        options = self.ort.RunOptions()
        if self.graphs:
            options.add_run_config_entry("gpu_graph_id", "-1")  # this run only learns the shapes
        try:
            self.session.run_with_iobinding(binding, options)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises plain RuntimeError / Fail
            raise BackendError(f"ONNX Runtime failed: {quote_error(exc)}") from exc
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(self._outputs, outputs):
            binding.bind_ortvalue_output(name, value)
        graph_id = -1
        if self.graphs:
            if self._graph_ids < self.MAX_GRAPHS:
                graph_id, self._graph_ids = self._graph_ids, self._graph_ids + 1
            elif not any("CUDA graphs" in n for n in self.notes):
                self.notes.append(f"more than {self.MAX_GRAPHS} input shapes: CUDA graphs only for the first "
                                  f"{self.MAX_GRAPHS}; fix the batch and tile sizes to capture every call")
            options = self.ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(graph_id))
        return _Slot(binding=binding, inputs=inputs, options=options, graph_id=graph_id)

    def _evict(self) -> None:
        """Drop the least recently used uncaptured slots over :attr:`MAX_SLOTS` (captured ones stay)."""
        for key in [k for k, s in self._slots.items() if s.graph_id < 0][:max(len(self._slots) - self.MAX_SLOTS, 0)]:
            del self._slots[key]

    def _stop_graphs(self, exc: BaseException) -> None:
        self.graphs = False
        self.notes.append(f"CUDA graph capture failed and was turned off ({quote_error(exc)})")
        for slot in self._slots.values():
            slot.graph_id = -1
            slot.options = self.ort.RunOptions()
            slot.options.add_run_config_entry("gpu_graph_id", "-1")


@dataclass
class _Slot:
    """One set of input shapes: its binding, input buffers and run options."""

    binding: Any
    inputs: dict[str, Any]
    options: Any
    graph_id: int


def _spec(arg: Any) -> TensorSpec:
    """An ONNX Runtime ``NodeArg`` as a spec: unknown dims (None) become ``"?"``, like a symbolic one."""
    return TensorSpec(name=arg.name, shape=["?" if d is None else d for d in arg.shape],
                      dtype=_DTYPES.get(arg.type, arg.type))
