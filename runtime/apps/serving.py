"""The Python-backend models of a Triton model repository (``flare export triton``).

Triton runs the ONNX models itself; what it cannot do is the project's own work around
them: decoding an image sent as bytes and preprocessing it exactly as the bundle says,
tiling a large image for super-resolution, and the diffusion sampling loop. The
``model.py`` files in the repository are three lines that hand Triton's
``triton_python_backend_utils`` to :func:`triton_model`; everything else is here, built on
the same runtime classes the CLI uses (:class:`Enhancer`, :class:`Generator`), whose
model calls go back into the server through :class:`BLSRunner` (Triton's business logic
scripting). So the tests run these models with a stand-in for ``pb_utils`` and get the
runtime's own answers, and a server gets them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.core.backends.base import Runner
from flare.runtime.core.manifest import Manifest, TensorSpec
from flare.runtime.core.preprocess import PreprocessSpec, StretchSpec, preprocess
from flare.runtime.foundation.errors import BackendError, FlareError, ImageDecodeError, UsageError, one_line
from flare.runtime.io.images import load_rgb_bytes

#: The names clients use: one encoded image in, and for generation the request fields.
IMAGE, ENHANCED, IMAGES = "IMAGE", "ENHANCED", "IMAGES"
GENERATE_INPUTS = {"CLASS": "object", "PROMPT": "object", "SEED": "int64", "COUNT": "int64", "STEPS": "int64",
                   "GUIDANCE": "float32", "SAMPLER": "object"}


class BLSRunner(Runner):
    """Another model of the same Triton server, called from a Python-backend model."""

    def __init__(self, pb_utils: Any, model_name: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 max_batch: int | None = None) -> None:
        super().__init__(inputs, outputs, max_batch, specs_from=f"Triton model {model_name}")
        self.pb_utils, self.model_name = pb_utils, model_name

    def _activate(self) -> None:
        self.name = f"triton:{self.model_name}"

    def _deactivate(self) -> None:
        pass

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pb = self.pb_utils
        # A per-sample scalar (the UNet's timestep, shape [B]) is declared [1] with an empty
        # reshape in the config (Triton needs one dim): it is sent as [B, 1].
        tensors = [pb.Tensor(name, np.ascontiguousarray(a[:, None] if a.ndim == 1 else a)) for name, a in feeds.items()]
        extra = {}
        if hasattr(pb, "PreferredMemory"):  # outputs in host memory, so as_numpy() works for GPU models too
            extra["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(model_name=self.model_name, requested_output_names=[o.name for o in self.outputs],
                                      inputs=tensors, **extra)
        response = request.exec()
        if response.has_error():
            raise BackendError(f"Triton model {self.model_name} failed: {one_line(response.error().message())}")
        return {o.name: pb.get_output_tensor_by_name(response, o.name).as_numpy() for o in self.outputs}


def decode_request(data: Any, stretch: StretchSpec = StretchSpec()) -> np.ndarray:
    """One image sent as bytes, decoded as the CLI decodes files; a bad one is a one-line error."""
    try:
        return load_rgb_bytes(bytes(data), stretch=stretch)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"the request's {IMAGE} {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClassifyPreprocess:
    """Encoded images -> the classifier's input batch, by the bundle's own preprocessing."""

    def __init__(self, folder: Path, pb_utils: Any) -> None:
        manifest = Manifest.load(folder, verify=False)
        self.spec = PreprocessSpec.from_dict(manifest.preprocessing)
        self.output = manifest.inputs[0].name

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = inputs[IMAGE].reshape(-1)
        return {self.output: np.stack([preprocess(decode_request(b, self.spec.stretch), self.spec) for b in images])}

    def close(self) -> None:
        pass


class EnhanceModel:
    """One encoded image -> its super-resolved pixels (HxWx3 uint8), tiled as ``flare enhance`` tiles."""

    def __init__(self, folder: Path, pb_utils: Any) -> None:
        from flare.runtime.tasks.enhance import Enhancer

        manifest = Manifest.load(folder, verify=False)
        config = json.loads((folder / "serving.json").read_text())
        runner = BLSRunner(pb_utils, config["model"], manifest.inputs, manifest.outputs, config["max_batch"])
        self.enhancer = Enhancer(folder, batch=config["max_batch"], open_part=lambda part: runner)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {ENHANCED: self.enhancer.enhance_rgb(decode_request(inputs[IMAGE].reshape(-1)[0]))}

    def close(self) -> None:
        self.enhancer.close()


class GenerateModel:
    """Request fields -> generated images (N x H x W x 3 uint8), sampling over the server's UNet and VAE."""

    def __init__(self, folder: Path, pb_utils: Any) -> None:
        from flare.runtime.tasks.generate import Generator

        config = json.loads((folder / "serving.json").read_text())
        manifest = Manifest.load(folder, verify=False)

        def open_part(key: str) -> Runner:
            part = config["parts"][key]
            return BLSRunner(pb_utils, part["model"], *manifest.specs_of(key), part["max_batch"])

        self.generator = Generator(folder, batch=config["max_batch"], open_part=open_part)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        def field(name: str, default: Any) -> Any:
            value = inputs.get(name)
            return default if value is None or value.size == 0 else value.reshape(-1)[0]

        name, prompt = field("CLASS", None), field("PROMPT", None)
        if (name is None) == (prompt is None):
            raise UsageError("send either CLASS or PROMPT")
        defaults = self.generator.spec.defaults
        count, seed = int(field("COUNT", 1)), int(field("SEED", 0))
        if not 1 <= count <= 64:
            raise UsageError(f"COUNT must be 1 to 64, not {count}")
        steps = int(field("STEPS", defaults.get("steps", 50)))
        seeds = [seed + j for j in range(count)]
        kwargs = {"steps": steps, "guidance": float(field("GUIDANCE", defaults.get("guidance", 8.0))),
                  "sampler": _text(field("SAMPLER", defaults.get("sampler", "dpmpp")))}
        if prompt is not None:
            images = self.generator.generate([], seeds, prompts=[_text(prompt)] * count, **kwargs)
        else:
            images = self.generator.generate([_text(name)] * count, seeds, **kwargs)
        return {IMAGES: images}

    def close(self) -> None:
        self.generator.close()


MODELS = {"classify_preprocess": ClassifyPreprocess, "enhance": EnhanceModel, "generate": GenerateModel}


def triton_model(kind: str, pb_utils: Any) -> type:
    """The ``TritonPythonModel`` class of a repository's ``model.py`` for ``kind`` (see :data:`MODELS`).

    A mistake in a request (an unknown class, a broken image) becomes that request's error
    response, one line, and the other requests of the batch still get their answers.
    """
    make = MODELS[kind]

    class TritonPythonModel:
        def initialize(self, args: dict[str, str]) -> None:
            folder = Path(args["model_repository"]) / args["model_version"]
            self.config = json.loads(args["model_config"])
            self.model = make(folder, pb_utils)
            self.inputs = [i["name"] for i in self.config["input"]]

        def execute(self, requests: list[Any]) -> list[Any]:
            responses = []
            for request in requests:
                feeds = {}
                for name in self.inputs:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        feeds[name] = tensor.as_numpy()
                try:
                    outputs = self.model(feeds)
                except FlareError as exc:
                    responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                    continue
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()]))
            return responses

        def finalize(self) -> None:
            self.model.close()

    TritonPythonModel.__name__ = TritonPythonModel.__qualname__ = "TritonPythonModel"
    return TritonPythonModel
