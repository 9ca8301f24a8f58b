"""The choice of runner for one model file of a bundle, apart from the runner interface so that
the runners (which import the interface) and this chooser (which imports the runners) form no cycle."""

from __future__ import annotations

from pathlib import Path

from flare.runtime.core.backends.base import Runner
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.engines import Profile, engine_for, engine_profile, profile_shapes
from flare.runtime.core.manifest import Manifest
from flare.runtime.foundation.errors import BackendError, UsageError


def open_runner(bundle: Path, manifest: Manifest, options: RunnerOptions = RunnerOptions(),
                model_key: str = "model") -> Runner:
    """An inactive runner for ``manifest.files[model_key]`` on the requested backend.

    ``trt-engine`` runs the bundle's serialized TensorRT engine with TensorRT's own Python
    API; ``openvino`` compiles the ONNX file with OpenVINO; every other choice runs the ONNX
    file through ONNX Runtime, which then picks TensorRT, CUDA or CPU execution providers
    (see :mod:`flare.runtime.core.backends.ort_runner`). What else may be chosen is in
    :class:`RunnerOptions`.
    """
    backend = options.backend
    if model_key not in manifest.files:
        raise BackendError(f"{bundle} has no {model_key!r} file; it holds {', '.join(manifest.files)}")
    if backend == "trt-engine":
        from flare.runtime.core.backends.trt_runner import TensorRTRunner

        engine = engine_for(manifest, model_key, str(bundle))
        return TensorRTRunner(bundle / manifest.files[engine.file].path, *manifest.specs_of(model_key),
                              engine.max_batch, specs_from=str(bundle / Manifest.FILE))
    entry = manifest.files[model_key]
    if backend == "openvino":
        from flare.runtime.core.backends.openvino_runner import OpenVINORunner

        return OpenVINORunner(bundle / entry.path, *manifest.specs_of(model_key), max_batch=entry.max_batch,
                              specs_from=str(bundle / Manifest.FILE), threads=options.threads)
    from flare.runtime.core.backends.ort_runner import OnnxRuntimeRunner

    profile = _provider_profile(manifest, model_key)
    return OnnxRuntimeRunner(bundle / entry.path, *manifest.specs_of(model_key), options,
                             cache_dir=bundle / "trt_cache", fp16=manifest.precision_of(model_key) == "fp16",
                             max_batch=entry.max_batch, specs_from=str(bundle / Manifest.FILE),
                             trt_profile=profile_shapes(profile) if profile else None,
                             trt_max_batch=next(iter(profile.values()))[2][0] if profile else None,
                             graph_blockers=_control_flow(manifest, model_key))


def _control_flow(manifest: Manifest, model_key: str) -> list[str]:
    """The control-flow ops (If, Loop, Scan) of a model, from the export's op list: CUDA graphs cannot hold them."""
    ops = manifest.extra.get("tensorrt_ops", {}).get("models", {}).get(model_key, {}).get("ops", [])
    return [op for op in ops if op in ("If", "Loop", "Scan")]


def _provider_profile(manifest: Manifest, model_key: str) -> Profile:
    """The TensorRT provider's profile: the same rule as the bundle's own engines."""
    try:
        return engine_profile(manifest, model_key)
    except (BackendError, UsageError, KeyError, ValueError):
        return {}  # a bundle no rule covers: the provider then builds for the shapes it sees
