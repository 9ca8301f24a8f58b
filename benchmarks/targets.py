"""What ``flare bench`` compares: one backend at one precision, opened as a :class:`Session`.

A session gives the benchmark three things behind one interface, whatever runs underneath:
a call bound to one input batch (timed), predictions on the evaluation images (for top-1
agreement and accuracy), and the rate of a large GEMM through the same library, device and
precision (the peak a row is compared with). A backend that cannot run here raises
:class:`Skip` with the reason a reader needs, instead of being left out silently.

The runtime's backends are opened with :func:`flare.runtime.core.backends.open_runner`, exactly
as ``flare classify`` and ``flare triage`` open them. ONNX Runtime rows are timed through IO
binding (inputs placed once on the device, outputs bound there), so a CUDA figure is the
model's time rather than host-device copies; the copies show in the end-to-end section.
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flare.benchmarks.peak import best_gflops, gemm_input, gemm_onnx
from flare.runtime.core.backends.base import Runner
from flare.runtime.core.backends.open import open_runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.manifest import Manifest
from flare.runtime.foundation.errors import FlareError, MissingExtraError

#: The backends ``--backends`` may name; runtime ones keep the runtime's ``--backend`` names.
BENCH_BACKENDS = ("torch", "torch-compile", "cpu", "cuda", "tensorrt", "trt-engine", "openvino")
#: The library family of each backend: its GEMM peak is measured through the same one.
LIBRARY = {"torch": "torch", "torch-compile": "torch", "cpu": "onnxruntime", "cuda": "onnxruntime",
           "tensorrt": "onnxruntime", "trt-engine": "tensorrt", "openvino": "openvino"}
#: Runner names (:attr:`Runner.name`) that execute on a CUDA GPU.
GPU_RUNNERS = ("onnxruntime:cuda", "onnxruntime:tensorrt", "tensorrt:engine")


class Skip(Exception):
    """This target cannot run here; the message says why, for the report."""


@dataclass(frozen=True)
class Target:
    """One row group of the report: a backend, a precision and an input variant."""

    backend: str
    precision: str
    variant: str = "plain"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" fused" if self.variant == "fused" else "")


class Session(ABC):
    """One target, opened. ``uint8`` says whether it takes uint8 NHWC (fused) or float NCHW."""

    name: str
    device: str = "cpu"
    uint8: bool = False
    max_batch: int | None = None
    notes: list[str]

    @abstractmethod
    def bind(self, batch: np.ndarray) -> Callable[[], object]:
        """A call that runs the model on ``batch`` (copied to the device once, here)."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Scores (logits or probabilities) for ``batch``; their argmax is the top-1 class."""

    @abstractmethod
    def gemm_peak(self, n: int) -> float | None:
        """GFLOP/s of an ``n``-square GEMM through this session's library, device and precision."""

    def sync(self) -> None:
        """Wait for queued device work (the CUDA stream); nothing to wait for on a CPU."""

    def close(self) -> None:
        """Free what the session holds."""


class RunnerSession(Session):
    """A runtime :class:`Runner`; ONNX Runtime ones are called through IO binding."""

    def __init__(self, runner: Runner, target: Target) -> None:
        self.runner, self.target = runner.activate(), target
        self.name = runner.name
        self.notes = list(runner.notes)
        self.max_batch = runner.max_batch
        self.uint8 = runner.inputs[0].dtype == "uint8"
        self.device = "cuda" if self.name in GPU_RUNNERS else "cpu"
        self.input_name = runner.inputs[0].name
        self.output_name = runner.outputs[0].name

    def bind(self, batch: np.ndarray) -> Callable[[], object]:
        feeds = {self.input_name: np.ascontiguousarray(batch)}
        self.runner.check_inputs(feeds)
        session = getattr(self.runner, "session", None)
        if session is None:  # not ONNX Runtime: the runner's own call
            return lambda: self.runner.infer(feeds)
        from flare.runtime.core.backends.ort_runner import import_onnxruntime

        ort = import_onnxruntime()
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(feeds[self.input_name],
                                                                                      self.device, 0))
        for output in self.runner.outputs:
            binding.bind_output(output.name, self.device)
        binding.synchronize_inputs()

        def call() -> list:
            session.run_with_iobinding(binding)
            return binding.get_outputs()  # OrtValues where they were bound: no copy back
        return call

    def predict(self, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch or len(batch)
        return np.concatenate([self.runner.infer({self.input_name: np.ascontiguousarray(batch[i:i + step])})
                               [self.output_name] for i in range(0, len(batch), step)]).astype(np.float32)

    def gemm_peak(self, n: int) -> float | None:
        if self.target.backend == "trt-engine":
            return None  # a GEMM engine would need its own build; reported as not measured
        from flare.export.onnx_export import tensor_specs

        with tempfile.TemporaryDirectory(prefix="flare-gemm-") as tmp:
            path = gemm_onnx(Path(tmp) / "gemm.onnx", n, self.target.precision)
            inputs, outputs = tensor_specs(path)
            runner = _gemm_runner(self.target.backend, path, inputs, outputs)
            with runner:
                session = RunnerSession(runner, self.target)
                return best_gflops(session.bind(gemm_input(n, self.target.precision)), n)

    def close(self) -> None:
        self.runner.deactivate()


def _gemm_runner(backend: str, path: Path, inputs, outputs) -> Runner:
    if backend == "openvino":
        from flare.runtime.core.backends.openvino_runner import OpenVINORunner

        return OpenVINORunner(path, inputs, outputs)
    from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, inputs, outputs, RunnerOptions(backend))


class TorchSession(Session):
    """The source model in PyTorch, eager or through ``torch.compile`` (compiled on first call)."""

    def __init__(self, model: Any, target: Target) -> None:
        import torch

        self.torch, self.target = torch, target
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch.float16 if target.precision == "fp16" else torch.float32
        model = model.to(self.device, self.dtype).eval()
        self.model = torch.compile(model) if target.backend == "torch-compile" else model
        self.name = f"torch:{self.device}" + (" (compiled)" if target.backend == "torch-compile" else "")
        self.notes = []

    def _tensor(self, batch: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)

    def bind(self, batch: np.ndarray) -> Callable[[], object]:
        x = self._tensor(batch)

        def call() -> object:
            with self.torch.inference_mode():
                return self.model(x)
        return call

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return np.concatenate([self.model(self._tensor(batch[i:i + 16])).float().cpu().numpy()
                                   for i in range(0, len(batch), 16)])

    def gemm_peak(self, n: int) -> float | None:
        a = self.torch.randn(n, n, device=self.device, dtype=self.dtype)
        b = self.torch.randn(n, n, device=self.device, dtype=self.dtype)
        with self.torch.inference_mode():
            return best_gflops(lambda: a @ b, n, sync=self.sync)

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def close(self) -> None:
        self.model = None
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


def open_session(target: Target, bundle: Path | None, torch_model: Callable[[], Any] | None,
                 torch_note: str) -> tuple[Session, float]:
    """Open ``target`` on ``bundle`` (runtime backends) or ``torch_model()`` (torch ones).

    Returns the session and the seconds opening took (session creation, engine load). Raises
    :class:`Skip` naming why the target cannot run here.
    """
    started = time.perf_counter()
    if target.backend in ("torch", "torch-compile"):
        session: Session = _open_torch(target, torch_model, torch_note)
    else:
        if bundle is None:
            raise Skip(f"no {target.precision} {target.variant} bundle to run")
        try:
            runner = open_runner(bundle, Manifest.load(bundle), RunnerOptions(target.backend))
            session = RunnerSession(runner, target)
        except MissingExtraError as exc:
            raise Skip(str(exc)) from exc
        except FlareError as exc:
            raise Skip(str(exc)) from exc
    return session, time.perf_counter() - started


def _open_torch(target: Target, torch_model: Callable[[], Any] | None, torch_note: str) -> Session:
    if target.variant == "fused":
        raise Skip("the fused variant is an ONNX graph; torch runs the source model on float input")
    if target.precision == "int8":
        raise Skip("int8 is the bundle's QDQ graph (ONNX Runtime, OpenVINO, TensorRT run it); torch has no "
                   "equivalent eager int8 path")
    try:
        import torch
    except ImportError as exc:
        raise Skip("torch is not installed (pip install 'flare-edge[train]')") from exc
    if target.precision == "fp16" and not torch.cuda.is_available():
        raise Skip("torch fp16 on a CPU is emulated, not a deployment path; it is measured on CUDA GPUs")
    if torch_model is None:
        raise Skip(torch_note)
    if target.backend == "torch-compile" and not hasattr(torch, "compile"):
        raise Skip(f"torch {torch.__version__} has no torch.compile")
    return TorchSession(torch_model(), target)
