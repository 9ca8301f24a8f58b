"""Native TensorRT 10 runner for serialized engines (``--engine`` bundles).

Written to the documented TensorRT 10 Python API (named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device memory from NVIDIA's
``cuda-python`` (``cuda.bindings.runtime``), so the runtime stays free of torch and pycuda.
TensorRT cannot be installed on our CI machines: this module is exercised only by the tests
marked ``tensorrt``, on a machine that has it. An engine is tied to the GPU model and the
TensorRT version that built it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import BackendError


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError("TensorRT is not installed: pip install 'flare-edge[gpu]' on an NVIDIA machine") from exc
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendError("the TensorRT runner needs cuda-python: pip install cuda-python") from exc
    return trt, cudart


def _check(result):
    """cuda-python returns (error, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA call failed with error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTRunner:
    """Runs a TensorRT engine; inputs and outputs are numpy arrays on the host."""

    def __init__(self, engine_path: Path) -> None:
        trt, cudart = _import_trt()
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        try:
            runtime = trt.Runtime(self._logger)
            self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        except OSError as exc:
            raise BackendError(f"cannot read TensorRT engine {engine_path}: {exc}") from exc
        if self.engine is None:
            raise BackendError(
                f"{engine_path} could not be deserialized: engines only run on the GPU model and "
                "TensorRT version that built them; re-export with --engine on this machine"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = _check(cudart.cudaStreamCreate())
        self.name = "tensorrt:engine"

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        trt, cudart = self._trt, self._cudart
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        allocations = []
        try:
            for name in self.input_names:
                dtype = trt.nptype(self.engine.get_tensor_dtype(name))
                host = np.ascontiguousarray(feeds[name], dtype=dtype)
                self.context.set_input_shape(name, host.shape)
                ptr = _check(cudart.cudaMalloc(host.nbytes))
                allocations.append(ptr)
                _check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, to_device, self.stream))
                self.context.set_tensor_address(name, ptr)
            outputs = []
            for name in self.output_names:
                dtype = trt.nptype(self.engine.get_tensor_dtype(name))
                host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
                ptr = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                allocations.append(ptr)
                self.context.set_tensor_address(name, ptr)
                outputs.append((host, ptr))
            if not self.context.execute_async_v3(self.stream):
                raise BackendError("TensorRT execution failed (see the TensorRT log above)")
            for host, ptr in outputs:
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, to_host, self.stream))
            _check(cudart.cudaStreamSynchronize(self.stream))
            return [host.astype(np.float32, copy=False) for host, _ in outputs]
        finally:
            for ptr in allocations:
                cudart.cudaFree(ptr)
