"""TensorRT engines for a bundle's ONNX files, with TensorRT 10 or TensorRT 11.

Written to NVIDIA's documented Python API (``Builder`` -> ``create_network`` ->
``OnnxParser`` -> builder config with a workspace limit, one optimisation profile and a
timing cache -> ``build_serialized_network``). TensorRT 11 removed the FP16 / INT8 builder
flags and builds every network strongly typed: the precision of each layer is the
precision of its tensors in the ONNX graph. Our exporters already put it there (fp16
weights and activations with fp32 graph edges, symmetric int8 Q/DQ), so we build strongly
typed on every version that knows the mode, and fall back to precision flags only on a
TensorRT old enough to lack it. Optional symbols are looked up with :func:`_optional`,
never as plain attributes, so a test can list every plain ``trt.`` attribute this module
uses and check each one exists in TensorRT 10 and 11 (``tests/test_tensorrt_build.py``).

Engines are added to a finished bundle (``--engine`` on an export, or ``flare export
engine BUNDLE`` on the target machine), keyed and recorded as :mod:`flare.runtime.core.engines`
describes. TensorRT cannot be installed on our CI machines: a real build runs only in the
tests marked ``tensorrt``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flare.export.trt_ops import UnsupportedOpError, check_models
from flare.runtime.core.artifact import sha256
from flare.runtime.core.engines import (Platform, Profile, ProfileOptions, engine_file_name, engine_profile,
                                   profile_to_manifest, this_platform)
from flare.runtime.core.manifest import BundleFile, EngineInfo, Manifest
from flare.runtime.core.tasks import task_named
from flare.runtime.foundation.atomic import write_atomically
from flare.runtime.foundation.errors import FlareError, MissingExtraError, one_line
from flare.runtime.foundation.progress import log

#: The timing cache a bundle keeps beside its engines: reused by the next build on the same GPU.
TIMING_CACHE = "timing.cache"
WORKSPACE_GIB = 4.0


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError("building TensorRT engines (--engine)", "gpu") from exc
    return trt


def _optional(owner: Any, name: str) -> Any:
    """A symbol some TensorRT versions lack (None there)."""
    return getattr(owner, name, None)


def network_mode(trt: Any) -> tuple[int, bool]:
    """``create_network`` flags and whether the network is strongly typed.

    TensorRT 11 is strongly typed whatever the flags say (its ``STRONGLY_TYPED`` member
    is kept only as deprecated); TensorRT 10 must be asked; older ones cannot be.
    """
    major = int(str(trt.__version__).split(".")[0])
    if major >= 11:
        return 0, True
    strongly = _optional(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly is None:
        return 0, False
    return 1 << int(strongly), True


def precision_flags(trt: Any, precision: str, strongly_typed: bool) -> list[Any]:
    """Builder flags for ``precision``: none for a strongly typed network, whose graph decides
    (TensorRT refuses FP16 / INT8 flags there), else those this TensorRT still has."""
    if strongly_typed or precision == "fp32":
        return []
    names = ["FP16"] if precision == "fp16" else ["INT8", "FP16"]  # int8: unquantized layers in fp16
    return [flag for flag in (_optional(trt.BuilderFlag, n) for n in names) if flag is not None]


def build_engine(onnx_path: Path, plan_path: Path, profile: Profile, precision: str,
                 timing_cache: Path | None = None, workspace_gib: float = WORKSPACE_GIB) -> bool:
    """Build ``onnx_path`` into ``plan_path`` (atomically); returns whether it is strongly typed.

    ``timing_cache`` is read when it exists and written back with what this build measured,
    so the next build of a similar graph on this GPU skips the measuring.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags, strongly_typed = network_mode(trt)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FlareError(f"TensorRT cannot parse {onnx_path}: {one_line(errors)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    for flag in precision_flags(trt, precision, strongly_typed):
        config.set_flag(flag)
    known = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(known)
    config.set_timing_cache(cache, False)  # False: refuse a cache from another GPU or version
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FlareError(f"TensorRT could not build an engine for {onnx_path} (see the TensorRT log above)")
    write_atomically(plan_path, lambda tmp: tmp.write_bytes(bytes(serialized)))
    if timing_cache is not None:
        data = bytes(config.get_timing_cache().serialize())
        write_atomically(timing_cache, lambda tmp: tmp.write_bytes(data))
    return strongly_typed


def onnx_models(manifest: Manifest) -> list[str]:
    """Every ONNX model file of a bundle (what the op check reads)."""
    return [key for key in task_named(manifest.task).parts if key in manifest.files]


def engine_models(manifest: Manifest) -> list[str]:
    """The model files that get an engine: all but the sampler step, which only runs through
    ONNX Runtime (it keeps latents in ONNX Runtime's device buffers between UNet calls)."""
    return [key for key in onnx_models(manifest) if key != "sampler_step"]


def add_engines(bundle: Path, manifest: Manifest, options: ProfileOptions = ProfileOptions(),
                timing_cache: Path | None = None, platform: Platform | None = None) -> Manifest:
    """Build an engine for every model of the bundle on this GPU and record them in its manifest.

    An engine already recorded for the same model, TensorRT release and compute capability
    is replaced; engines for other machines are kept. Each engine is built under a temporary
    name, moved to a name of its own (it carries the start of its sha256), named by the
    manifest (saved atomically), and only then is the engine it replaces deleted: however a
    build ends, the manifest names files that are there and match, and the bundle opens.
    """
    bundle = Path(bundle)
    platform = platform or this_platform()
    cache = timing_cache or bundle / TIMING_CACHE
    for key in engine_models(manifest):
        profile = engine_profile(manifest, key, options)
        precision = manifest.precision_of(key)
        log(f"building a TensorRT {platform.tensorrt} engine for {key} ({precision}) on {platform.gpu}: "
            + ", ".join(f"{n} {lo} to {hi}" for n, (lo, _, hi) in profile.items()))
        building = bundle / f"{key}.{platform.key}.{precision}.building"
        strongly_typed = build_engine(bundle / manifest.files[key].path, building, profile, precision, cache)
        name = engine_file_name(key, platform, precision, sha256(building))
        os.replace(building, bundle / name)
        role = f"engine_{key}.{platform.key}"
        replaced = manifest.files.get(role)
        manifest.files[role] = BundleFile.describe(bundle, name)
        manifest.engines = [e for e in manifest.engines if not (e.model == key and e.file == role)]
        manifest.engines.append(EngineInfo(model=key, file=role, tensorrt=platform.tensorrt,
                                           compute_capability=platform.compute_capability, gpu=platform.gpu,
                                           precision=precision, profile=profile_to_manifest(profile),
                                           strongly_typed=strongly_typed))
        manifest.save(bundle)
        if replaced is not None and replaced.path != name:
            (bundle / replaced.path).unlink(missing_ok=True)
    return manifest


@dataclass(frozen=True)
class TensorRTOptions:
    """What an export's TensorRT options ask for (``--engine``, ``--max-batch``, ...)."""

    engine: bool = False
    profile: ProfileOptions = ProfileOptions()
    #: A timing cache to read and update (default: the bundle's own, kept across re-exports).
    timing_cache: Path | None = None
    allow_unsupported_ops: bool = False


def prepare_for_tensorrt(stage: Path, out: Path, manifest: Manifest, options: TensorRTOptions) -> Manifest:
    """The TensorRT step of every export, on the staged bundle before it is published.

    Always: the static op check of every model file (recorded in ``extra.tensorrt_ops``;
    an unsupported node refuses the export unless allowed). With ``--engine``: engines for
    this GPU, reusing the timing cache of the bundle being replaced when there is one.
    """
    models = {key: stage / manifest.files[key].path for key in onnx_models(manifest)}
    manifest.extra["tensorrt_ops"] = check_models(models, options.allow_unsupported_ops)
    manifest.save(stage)
    if options.engine:
        if not manifest.extra["tensorrt_ops"]["passed"]:
            raise UnsupportedOpError("--engine cannot build: TensorRT's parser refuses nodes of this bundle (see "
                                     "extra.tensorrt_ops in its manifest); export without --engine")
        previous = Path(out) / TIMING_CACHE
        if options.timing_cache is None and previous.is_file():
            shutil.copy2(previous, stage / TIMING_CACHE)
        add_engines(stage, manifest, options.profile, options.timing_cache)
    return manifest
