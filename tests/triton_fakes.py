"""Test support for Triton model repositories: Triton's own config schema, and a stand-in for the
server that runs the repository's models the way Triton would (ONNX models on ONNX Runtime,
Python-backend models through their model.py with a fake ``triton_python_backend_utils``,
ensembles step by step), so tests can compare what a client would get with the runtime's answer."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

_ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int64)": "TYPE_INT64",
              "tensor(uint8)": "TYPE_UINT8", "tensor(int32)": "TYPE_INT32"}


def parse(config: Path) -> Any:
    """``config.pbtxt`` parsed by Triton's own ModelConfig message (unknown fields raise)."""
    return text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())


def type_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def check_onnx_model(folder: Path) -> Any:
    """The config of an ONNX model folder agrees with its ONNX file's inputs and outputs."""
    import onnxruntime

    config = parse(folder / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.name == folder.name
    session = onnxruntime.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for t, a in zip(declared, actual):
            assert type_name(t.data_type) == _ORT_TYPES[a.type]
            assert a.shape[0] is None or isinstance(a.shape[0], str)  # the batch axis is free
            want = [d if isinstance(d, int) else -1 for d in a.shape[1:]]
            if t.HasField("reshape"):
                assert list(t.dims) == [1] and want == [] and list(t.reshape.shape) == []
            else:
                assert list(t.dims) == want
    assert config.max_batch_size > 0
    assert max(config.dynamic_batching.preferred_batch_size) <= config.max_batch_size
    return config


class Server:
    """Runs a repository's models as Triton would, in this process."""

    def __init__(self, repo: Path) -> None:
        self.repo, self.sessions, self.python_models = repo, {}, {}
        self.pb = self._pb_utils()

    def config(self, name: str) -> Any:
        return parse(self.repo / name / "config.pbtxt")

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        config = self.config(name)
        if config.platform == "ensemble":
            return self._ensemble(config, inputs)
        if config.backend == "python":
            return self._python(name, config, inputs)
        return self._onnx(name, inputs)

    def _onnx(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime

        if name not in self.sessions:
            self.sessions[name] = onnxruntime.InferenceSession(str(self.repo / name / "1" / "model.onnx"),
                                                               providers=["CPUExecutionProvider"])
        session = self.sessions[name]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))

    def _ensemble(self, config: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = dict(inputs)
        for step in config.ensemble_scheduling.step:
            out = self.infer(step.model_name, {key: tensors[value] for key, value in step.input_map.items()})
            tensors.update({value: out[key] for key, value in step.output_map.items()})
        return {o.name: tensors[o.name] for o in config.output}

    def _python(self, name: str, config: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if name not in self.python_models:
            sys.modules["triton_python_backend_utils"] = self.pb
            try:
                namespace: dict[str, Any] = {}
                code = (self.repo / name / "1" / "model.py").read_text()
                exec(compile(code, str(self.repo / name / "1" / "model.py"), "exec"), namespace)
            finally:
                del sys.modules["triton_python_backend_utils"]
            model = namespace["TritonPythonModel"]()
            from google.protobuf import json_format

            model.initialize({"model_repository": str(self.repo / name), "model_version": "1",
                              "model_config": json.dumps(json_format.MessageToDict(
                                  config, preserving_proto_field_name=True))})
            self.python_models[name] = model
        request = self.pb.Request([self.pb.Tensor(k, v) for k, v in inputs.items()])
        response = self.python_models[name].execute([request])[0]
        if response.has_error():
            raise RuntimeError(response.error().message())
        return {t.name(): t.as_numpy() for t in response.output_tensors()}

    def close(self) -> None:
        for model in self.python_models.values():
            model.finalize()

    def _pb_utils(self) -> types.ModuleType:
        server = self
        pb = types.ModuleType("triton_python_backend_utils")

        class Tensor:
            def __init__(self, name: str, array: np.ndarray) -> None:
                self._name, self._array = name, np.asarray(array)

            def name(self) -> str:
                return self._name

            def as_numpy(self) -> np.ndarray:
                return self._array

        class TritonError:
            def __init__(self, message: str) -> None:
                self._message = message

            def message(self) -> str:
                return self._message

        class InferenceResponse:
            def __init__(self, output_tensors: list, error: Any = None) -> None:
                self._tensors, self._error = output_tensors, error

            def has_error(self) -> bool:
                return self._error is not None

            def error(self) -> Any:
                return self._error

            def output_tensors(self) -> list:
                return self._tensors

        class Request:
            def __init__(self, inputs: list) -> None:
                self.inputs = inputs

        class InferenceRequest:
            """A BLS call: runs another model of the repository, checked against its config."""

            def __init__(self, model_name: str, requested_output_names: list[str], inputs: list) -> None:
                self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs

            def exec(self) -> InferenceResponse:
                config = server.config(self.model_name)
                feeds = {t.name(): t.as_numpy() for t in self.inputs}
                assert set(feeds) == {i.name for i in config.input}
                for spec in config.input:  # as Triton checks a request: [batch, *dims], then reshapes
                    array = feeds[spec.name]
                    assert len(array) <= config.max_batch_size, "over max_batch_size"
                    assert array.ndim == 1 + len(spec.dims) and all(
                        d in (-1, n) for d, n in zip(spec.dims, array.shape[1:])), (spec.name, array.shape)
                    if spec.HasField("reshape"):
                        feeds[spec.name] = array.reshape(len(array), *spec.reshape.shape)
                out = server.infer(self.model_name, feeds)
                return InferenceResponse([Tensor(n, out[n]) for n in self.outputs])

        def get_input_tensor_by_name(request: Any, name: str) -> Any:
            return next((t for t in request.inputs if t.name() == name), None)

        def get_output_tensor_by_name(response: Any, name: str) -> Any:
            return next((t for t in response.output_tensors() if t.name() == name), None)

        for item in (Tensor, TritonError, InferenceResponse, InferenceRequest, Request, get_input_tensor_by_name,
                     get_output_tensor_by_name):
            setattr(pb, item.__name__, item)
        return pb
