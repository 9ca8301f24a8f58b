"""Native TensorRT runner for serialized engines (``--engine`` bundles).

Written to the documented TensorRT 10 Python API (named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device memory from NVIDIA's
``cuda-python`` (``cuda.bindings.runtime``), so the runtime stays free of torch and pycuda.
TensorRT cannot be installed on our CI machines: this module is exercised only by the tests
marked ``tensorrt``, on a machine that has it. An engine is tied to the GPU model and the
TensorRT version that built it.

On activation the engine's own tensors are checked against the manifest
(:meth:`Runner.check_model_specs`), as the other runners check their model files.
Device buffers are allocated once per set of input shapes and reused while batches keep
that shape (a triage run is thousands of equal batches), and everything, the stream
included, is freed by :meth:`deactivate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.backends.base import Runner
from flare.runtime.core.engines import import_cudart, plan_version, same_release
from flare.runtime.core.manifest import TensorSpec
from flare.runtime.foundation.errors import BackendError, MissingExtraError


def _import_trt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError("the TensorRT engine backend", "gpu") from exc
    return trt, import_cudart("the TensorRT engine backend")


def _check(result: Any) -> Any:
    """cuda-python returns (error, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA call failed with error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTRunner(Runner):
    """Runs a TensorRT engine; inputs and outputs are numpy arrays on the host."""

    def __init__(self, engine_path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 max_batch: int | None = None, specs_from: str = "the manifest") -> None:
        super().__init__(inputs, outputs, max_batch, specs_from)
        self.engine_path = Path(engine_path)
        self._buffers: dict[str, tuple[np.ndarray, int]] = {}
        self._shapes: tuple[tuple[int, ...], ...] | None = None

    def _activate(self) -> None:
        trt, cudart = _import_trt()
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        try:
            built = plan_version(self.engine_path)
            data = self.engine_path.read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read TensorRT engine {self.engine_path}: {exc.strerror}") from exc
        if built is not None and not same_release(built, str(trt.__version__)):
            raise BackendError(f"{self.engine_path} was built by TensorRT {built} but this machine has "
                               f"{trt.__version__}; build one here with 'flare export engine BUNDLE'")
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(
                f"{self.engine_path} could not be deserialized: engines only run on the GPU model and "
                "TensorRT version that built them; build one here with 'flare export engine BUNDLE'")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.check_model_specs(self.engine_path.name, [self._spec(n) for n in self._input_names],
                               [self._spec(n) for n in self._output_names])
        if self.max_batch is None and self._input_names:  # the engine's own limit, profile 0
            self.max_batch = int(self.engine.get_tensor_profile_shape(self._input_names[0], 0)[2][0])
        self.stream = _check(cudart.cudaStreamCreate())
        self.name = "tensorrt:engine"

    def _spec(self, name: str) -> TensorSpec:
        """An engine tensor as a spec: dynamic dims (-1) become ``"?"``, like a symbolic one."""
        shape = [d if d >= 0 else "?" for d in self.engine.get_tensor_shape(name)]
        return TensorSpec(name=name, shape=shape, dtype=np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name))).name)

    def _free_buffers(self) -> None:
        for _, ptr in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers, self._shapes = {}, None

    def _deactivate(self) -> None:
        self._free_buffers()
        self._cudart.cudaStreamDestroy(self.stream)
        self.context = self.engine = None

    def _allocate(self, feeds: dict[str, np.ndarray]) -> None:
        """Set the input shapes and (re)allocate device buffers when they changed."""
        shapes = tuple(tuple(feeds[n].shape) for n in self._input_names)
        if shapes == self._shapes:
            return
        self._free_buffers()
        trt, cudart = self._trt, self._cudart
        for name, shape in zip(self._input_names, shapes):
            if not self.context.set_input_shape(name, shape):
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                raise BackendError(f"the engine does not accept {name} of shape {shape}; its profile allows "
                                   f"{tuple(lo)} to {tuple(hi)}")
        for name in self._input_names + self._output_names:
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
            ptr = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
            self._buffers[name] = (host, ptr)
            self.context.set_tensor_address(name, ptr)
        self._shapes = shapes

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        self._allocate(feeds)
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self._input_names:
            host, ptr = self._buffers[name]
            data = np.ascontiguousarray(feeds[name], dtype=host.dtype)
            _check(cudart.cudaMemcpyAsync(ptr, data.ctypes.data, data.nbytes, to_device, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT execution failed (see the TensorRT log above)")
        for name in self._output_names:
            host, ptr = self._buffers[name]
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, to_host, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return {name: self._buffers[name][0].astype(np.float32, copy=True) for name in self._output_names}
