"""``flare export triton``: a Triton Inference Server model repository from bundles.

For each bundle (``NAME`` is its folder name, made a valid model name):

* classify: ``NAME_model`` (the ONNX file, ``onnxruntime_onnx``, labels attached for
  Triton's classification extension), ``NAME_preprocess`` (Python backend: encoded image
  bytes -> the model input, by the bundle's preprocessing) and ``NAME``, the ensemble a
  client calls with ``IMAGE`` bytes.
* enhance: ``NAME_model`` (ONNX, variable tile size) and ``NAME`` (Python backend: one
  image in, tiled over ``NAME_model`` as ``flare enhance`` tiles, ``ENHANCED`` out).
* generate: ``NAME_unet``, ``NAME_vae_decoder`` (and the encoder / text encoder the bundle
  has) as ONNX models, and ``NAME`` (Python backend: ``CLASS`` or ``PROMPT``, ``SEED``,
  ``COUNT``, ``STEPS``, ``GUIDANCE``, ``SAMPLER`` in, ``IMAGES`` out; the sampling loop runs
  in the Python model and calls the UNet and VAE models in the server).

ONNX models get dynamic batching with preferred sizes, an instance group, and on GPUs the
TensorRT accelerator (FP16 where the bundle is fp16, INT8 for an int8 bundle). The Python
models are :mod:`flare.runtime.apps.serving`; they need ``flare-edge[cpu]`` in the server's
Python environment. The repository is written beside its destination and swapped in.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flare.export.bundle import staging
from flare.runtime.apps.serving import ENHANCED, GENERATE_INPUTS, IMAGE, IMAGES
from flare.runtime.core.manifest import Manifest, TensorSpec
from flare.runtime.core.tasks import GENERATE_MODELS, TASKS, task_named
from flare.runtime.foundation.atomic import publish_folder, write_json, write_text
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.fingerprint import fingerprint_path
from flare.runtime.foundation.progress import log

#: Marks a folder as a repository this command wrote (it may then be replaced).
MARKER = "flare-triton.json"
#: How long the dynamic batcher waits to fill a preferred batch.
QUEUE_DELAY_US = 2000
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
          "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
          "object": "TYPE_STRING"}
_PRECISION_MODE = {"fp16": "FP16", "int8": "INT8", "fp32": "FP32"}


class Enum(str):
    """A protobuf enum value: written without quotes."""


@dataclass(frozen=True)
class ServingOptions:
    """``--kind``, ``--instances`` and ``--max-batch`` of ``flare export triton``."""

    kind: str = "gpu"
    instances: int = 1
    max_batch: int | None = None


def pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """``message`` in protobuf text format (what ``config.pbtxt`` is); lists are repeated fields."""
    pad, lines = "  " * indent, []
    for key, value in message.items():
        for item in value if isinstance(value, list) and value and isinstance(value[0], dict) else [value]:
            if isinstance(item, dict):
                lines += [f"{pad}{key} {{", pbtxt(item, indent + 1), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(line for line in lines if line)


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return json.dumps(str(value))


def model_name(bundle: Path) -> str:
    """A Triton model name from a bundle's folder name (letters, digits, _ and -)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(bundle).resolve().name).strip("_")
    return name or "model"


def _tensor(spec: TensorSpec, batched: bool, **extra: Any) -> dict[str, Any]:
    """A config input / output: dims without the batch axis when batched, -1 where symbolic."""
    shape = spec.shape[1:] if batched else spec.shape
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape]
    entry: dict[str, Any] = {"name": spec.name, "data_type": Enum(_TYPES[spec.dtype])}
    if batched and not dims:  # a per-sample scalar (the UNet's timestep): Triton needs one dim
        entry.update(dims=[1], reshape={"shape": []})
    else:
        entry["dims"] = dims
    return {**entry, **extra}


def preferred_batches(max_batch: int) -> list[int]:
    return sorted({max(1, max_batch // 4), max(1, max_batch // 2), max_batch})


def onnx_config(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int, precision: str,
                options: ServingOptions, labels: str | None = None) -> dict[str, Any]:
    """An ``onnxruntime_onnx`` model with dynamic batching, instances and (GPU) the TensorRT accelerator."""
    config: dict[str, Any] = {
        "name": name, "platform": "onnxruntime_onnx", "max_batch_size": max_batch,
        "input": [_tensor(t, True) for t in inputs],
        "output": [_tensor(t, True, **({"label_filename": labels} if labels and i == 0 else {}))
                   for i, t in enumerate(outputs)],
        "dynamic_batching": {"preferred_batch_size": preferred_batches(max_batch),
                             "max_queue_delay_microseconds": QUEUE_DELAY_US},
        "instance_group": [{"count": options.instances, "kind": Enum(f"KIND_{options.kind.upper()}")}],
    }
    if options.kind == "gpu":
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [{
            "name": "tensorrt", "parameters": [{"key": "precision_mode", "value": _PRECISION_MODE[precision]}]}]}}
    return config


def python_config(name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], options: ServingOptions,
                  max_batch: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "backend": "python", "max_batch_size": max_batch,
                              "input": inputs, "output": outputs,
                              "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}]}
    if max_batch:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": QUEUE_DELAY_US}
    return config


MODEL_PY = '''"""Triton Python-backend model written by `flare export triton` ({kind}); the logic is
flare.runtime.apps.serving (pip install 'flare-edge[cpu]' in the server's Python environment)."""

import triton_python_backend_utils as pb_utils

from flare.export.bundle import staging
from flare.runtime.apps.serving import triton_model

TritonPythonModel = triton_model("{kind}", pb_utils)
'''


class RepositoryWriter:
    """Writes the models of each bundle into a staged repository folder."""

    def __init__(self, stage: Path, options: ServingOptions) -> None:
        self.stage, self.options = stage, options
        self.models: dict[str, str] = {}

    def folder(self, name: str, config: dict[str, Any], made_from: Path) -> Path:
        if name in self.models:
            raise UsageError(f"two bundles give the Triton model name {name!r}; rename one bundle folder")
        self.models[name] = str(made_from)
        folder = self.stage / name
        (folder / "1").mkdir(parents=True)
        write_text(folder / "config.pbtxt", pbtxt(config) + "\n")
        return folder

    def onnx_model(self, name: str, bundle: Path, manifest: Manifest, key: str, max_batch: int,
              labels: list[str] | None = None) -> None:
        inputs, outputs = manifest.specs_of(key)
        config = onnx_config(name, inputs, outputs, max_batch, manifest.precision_of(key), self.options,
                             "labels.txt" if labels else None)
        folder = self.folder(name, config, bundle)
        source = bundle / manifest.files[key].path
        shutil.copy2(source, folder / "1" / "model.onnx")
        for role, entry in manifest.files.items():  # external weights keep their names: the graph refers to them
            if role.startswith(f"{key}_weights"):
                shutil.copy2(bundle / entry.path, folder / "1" / entry.path)
        if labels:
            write_text(folder / "labels.txt", "\n".join(labels) + "\n")

    def python_model(self, name: str, kind: str, config: dict[str, Any], bundle: Path, manifest: Manifest,
                files: tuple[str, ...] = (), serving: dict[str, Any] | None = None) -> None:
        version = self.folder(name, config, bundle) / "1"
        write_text(version / "model.py", MODEL_PY.format(kind=kind))
        manifest.save(version)
        for role in files:
            if role in manifest.files:
                shutil.copy2(bundle / manifest.files[role].path, version / manifest.files[role].path)
        if serving is not None:
            write_json(version / "serving.json", serving)


def write_classify(writer: RepositoryWriter, name: str, bundle: Path, manifest: Manifest) -> None:
    """An ensemble: a Python model decoding and preprocessing images, then the ONNX model (with labels)."""
    top = task_named(manifest.task).engine.part_batch("model", writer.options.max_batch)
    assert manifest.labels is not None  # validated for classify bundles
    writer.onnx_model(f"{name}_model", bundle, manifest, "model", top, manifest.labels.classes)
    model_input, logits = manifest.inputs[0], manifest.outputs[0]
    image = {"name": IMAGE, "data_type": Enum("TYPE_STRING"), "dims": [1]}
    writer.python_model(f"{name}_preprocess", "classify_preprocess",
                        python_config(f"{name}_preprocess", [image], [_tensor(model_input, True)], writer.options, top),
                        bundle, manifest)
    writer.folder(name, {
        "name": name, "platform": "ensemble", "max_batch_size": top, "input": [image],
        "output": [_tensor(logits, True, label_filename="labels.txt")],
        "ensemble_scheduling": {"step": [
            {"model_name": f"{name}_preprocess", "model_version": -1,
             "input_map": [{"key": IMAGE, "value": IMAGE}],
             "output_map": [{"key": model_input.name, "value": "preprocessed"}]},
            {"model_name": f"{name}_model", "model_version": -1,
             "input_map": [{"key": model_input.name, "value": "preprocessed"}],
             "output_map": [{"key": logits.name, "value": logits.name}]},
        ]}}, bundle)
    write_text(writer.stage / name / "labels.txt", "\n".join(manifest.labels.classes) + "\n")


def write_enhance(writer: RepositoryWriter, name: str, bundle: Path, manifest: Manifest) -> None:
    """The ONNX model plus a Python model that tiles whole images through it."""
    top = task_named(manifest.task).engine.part_batch("model", writer.options.max_batch)
    writer.onnx_model(f"{name}_model", bundle, manifest, "model", top)
    config = python_config(name, [{"name": IMAGE, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
                           [{"name": ENHANCED, "data_type": Enum("TYPE_UINT8"), "dims": [-1, -1, 3]}],
                           writer.options)
    writer.python_model(name, "enhance", config, bundle, manifest, serving={"model": f"{name}_model", "max_batch": top})


def write_generate(writer: RepositoryWriter, name: str, bundle: Path, manifest: Manifest) -> None:
    """Every ONNX part plus a Python model running the sampling loop around them."""
    rule = task_named(manifest.task).engine
    images = writer.options.max_batch or rule.max_batch
    parts = {}
    for key in GENERATE_MODELS:  # the sampling loop runs in the Python model: no sampler-step model
        if key in manifest.files and key != "sampler_step":
            top = rule.part_batch(key, writer.options.max_batch)
            writer.onnx_model(f"{name}_{key}", bundle, manifest, key, top)
            parts[key] = {"model": f"{name}_{key}", "max_batch": top}
    inputs = [{"name": field, "data_type": Enum(_TYPES[dtype]), "dims": [1], "optional": True}
              for field, dtype in GENERATE_INPUTS.items()]
    config = python_config(name, inputs, [{"name": IMAGES, "data_type": Enum("TYPE_UINT8"),
                                           "dims": [-1, -1, -1, 3]}], writer.options)
    writer.python_model(name, "generate", config, bundle, manifest, files=("class_embeddings", "tokenizer"),
                        serving={"parts": parts, "max_batch": images})


def export_triton(bundles: list[Path], out: Path, options: ServingOptions = ServingOptions()) -> Path:
    """Write the repository for ``bundles`` to ``out`` (replacing a repository this command wrote)."""
    out = Path(out)
    if options.kind not in ("gpu", "cpu"):
        raise UsageError(f"--kind must be gpu or cpu, not {options.kind!r}")
    refusal = f"{out} holds files that 'flare export triton' did not write; choose a new or empty --out"
    with staging(out, MARKER, refusal) as stage:
        writer = RepositoryWriter(stage, options)
        made = []
        for bundle in bundles:
            manifest = Manifest.load(bundle)
            name = model_name(bundle)
            TASKS[manifest.task].triton_writer()(writer, name, Path(bundle), manifest)
            made.append({"model": name, "task": manifest.task, "bundle": str(Path(bundle).resolve()),
                         "manifest_sha256": fingerprint_path(Path(bundle) / Manifest.FILE)})
            log(f"{bundle} -> {name} ({manifest.task})")
        write_json(stage / MARKER, {"models": made, "all": sorted(writer.models),
                                    "kind": options.kind, "instances": options.instances})
        return publish_folder(stage, out)
