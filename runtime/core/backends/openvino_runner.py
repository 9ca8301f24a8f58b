"""OpenVINO runner: the bundle's ONNX file compiled for the CPU by Intel's runtime.

OpenVINO reads ONNX directly, so no second artefact is needed; on x86 CPUs it is often the
fastest engine for fp32 and, with the QDQ graphs our int8 bundles hold, for int8 (it folds
the quantize/dequantize pairs into int8 kernels). Two settings are ours, not OpenVINO's
defaults, and both are recorded in :attr:`Runner.notes`:

* ``INFERENCE_PRECISION_HINT`` is ``f32``. On CPUs with bf16 instructions OpenVINO would
  otherwise run an fp32 model in bf16, a lower precision than the bundle's parity gate
  checked; int8 graphs still run their quantized layers in int8.
* ``PERFORMANCE_HINT`` is ``LATENCY``: one synchronous request at a time, as the runtime's
  callers (classify, triage, bench) make them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.artifact import quote_error
from flare.runtime.core.backends.base import Runner
from flare.runtime.core.manifest import TensorSpec
from flare.runtime.foundation.errors import BackendError, MissingExtraError

#: OpenVINO element type names as numpy dtype names (what manifests record).
_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "bfloat16", "i8": "int8", "u8": "uint8",
           "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64", "u64": "uint64",
           "boolean": "bool"}


def import_openvino() -> Any:
    """Import OpenVINO or say how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingExtraError("the OpenVINO backend", "openvino") from exc
    return openvino


class OpenVINORunner(Runner):
    """One ONNX model compiled by OpenVINO for ``device`` (the CPU unless told otherwise)."""

    def __init__(self, model: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], device: str = "CPU",
                 threads: int | None = None, max_batch: int | None = None, specs_from: str = "the manifest") -> None:
        super().__init__(inputs, outputs, max_batch, specs_from)
        self.model, self.device, self.threads = Path(model), device, threads
        self.request: Any = None

    def _activate(self) -> None:
        ov = import_openvino()
        core = ov.Core()
        if self.device not in core.available_devices:
            raise BackendError(f"OpenVINO sees no {self.device} device here (it has {', '.join(core.available_devices)})")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            compiled = core.compile_model(core.read_model(str(self.model)), self.device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for any load failure
            raise BackendError(f"OpenVINO cannot compile {self.model} ({quote_error(exc)}); re-export the bundle, "
                               "or use --backend cpu (ONNX Runtime)") from exc
        inputs = [_spec(p, self.inputs) for p in compiled.inputs]
        outputs = [_spec(p, self.outputs) for p in compiled.outputs]
        self.check_model_specs(self.model.name, inputs, outputs)
        self.notes = ["OpenVINO runs floating-point layers in f32 (its CPU default would be bf16 here)"] \
            if "BF16" in core.get_property(self.device, "OPTIMIZATION_CAPABILITIES") else []
        self._compiled = compiled
        self._output_names = [spec.name for spec in outputs]
        self.request = compiled.create_infer_request()
        self.name = f"openvino:{self.device.lower()}"

    def _deactivate(self) -> None:
        self.request = None
        self._compiled = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        # Copies: the request reuses its output buffers on the next call.
        return {name: np.array(results[port]) for name, port in zip(self._output_names, self._compiled.outputs)}


def _spec(port: Any, expected: list[TensorSpec]) -> TensorSpec:
    """An OpenVINO port as a spec: dynamic dims become ``"?"``, like a symbolic one.

    A port can carry several tensor names (OpenVINO merges a Cast's output name into the
    graph input's, as in fp16 bundles); the one the manifest expects is used when present.
    """
    names = port.get_names()
    name = next((t.name for t in expected if t.name in names), port.get_any_name())
    shape: list[int | str] = ["?" if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
    kind = port.get_element_type().get_type_name()
    return TensorSpec(name=name, shape=shape, dtype=_DTYPES.get(kind, kind))
