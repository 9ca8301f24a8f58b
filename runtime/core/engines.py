"""TensorRT engines of a bundle: their optimisation profiles, what they were built for, and
whether they run here.

A serialized engine only runs on the TensorRT version and the GPU compute capability that
built it, and nothing in TensorRT checks that for you before a crash or a ``None`` from
``deserialize_cuda_engine``. So every engine is recorded in the manifest
(:class:`flare.runtime.core.manifest.EngineInfo`) with both, its precision and its profile;
its file name carries the same key, so engines for several GPUs can sit in one bundle;
and :func:`engine_for` picks the one built for this machine or refuses with what to do.

The profile rules live here, not in the exporter, because the ONNX Runtime TensorRT
provider needs the same min / opt / max shapes at run time (``trt_profile_*_shapes``):
one definition for both ways of reaching TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flare.runtime.core.manifest import EngineInfo, Manifest, TensorSpec
from flare.runtime.core.preprocess import EnhanceSpec
from flare.runtime.core.tasks import task_named
from flare.runtime.foundation.errors import BackendError, MissingExtraError, UsageError

#: Input name -> (min, opt, max) shapes of one optimisation profile.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

#: Largest tile side (input pixels) of an enhance engine unless ``--max-tile`` says otherwise.
DEFAULT_MAX_TILE = 512


@dataclass(frozen=True)
class ProfileOptions:
    """What the user may choose about an engine's shapes (``--max-batch``, ``--max-tile``)."""

    max_batch: int | None = None
    max_tile: int | None = None


@dataclass(frozen=True)
class Platform:
    """The TensorRT version and GPU an engine is built on or asked to run on."""

    tensorrt: str
    compute_capability: str
    gpu: str

    @property
    def key(self) -> str:
        """``trt10.13.0-sm90``: the part of an engine's file name that says where it runs (the
        TensorRT release without its build number, as :func:`same_release` compares)."""
        release = ".".join(self.tensorrt.split(".")[:3])
        return f"trt{release}-sm{self.compute_capability.replace('.', '')}"


def engine_file_name(model_key: str, platform: Platform, precision: str, digest: str) -> str:
    """``unet.trt10.13.0-sm90.fp16.1a2b3c4d.plan``: model, TensorRT release, compute capability,
    precision, and the start of the engine's sha256 (a rebuild never overwrites the file the
    manifest names until the manifest names the new one)."""
    return f"{model_key}.{platform.key}.{precision}.{digest[:8]}.plan"


def engine_profile(manifest: Manifest, model_key: str, options: ProfileOptions = ProfileOptions()) -> Profile:
    """The min / opt / max shapes of ``model_key``'s inputs, from the manifest and the options.

    The batch axis runs from 1 to the maximum batch, tuned at that maximum for the
    throughput tasks (a triage or an enhancement fills its batches) and at one image for
    generation (twice that for the guided parts). Spatial axes of an enhance model run
    from the smallest side the model accepts to ``--max-tile`` (never below the bundle's
    recommended tile), tuned at the recommended tile. Every other axis is fixed.
    """
    rule = task_named(manifest.task).engine
    top, opt_batch = rule.part_batch(model_key, options.max_batch), rule.tuned_batch(model_key, options.max_batch)
    spatial: tuple[int, int, int] | None = None
    if rule.tiled:
        spec = EnhanceSpec.from_dict(manifest.preprocessing)
        largest = max(options.max_tile or DEFAULT_MAX_TILE, spec.tile)
        if largest % spec.window:
            raise UsageError(f"--max-tile {largest} must be a multiple of the model's window ({spec.window})")
        spatial = (spec.min_side, spec.tile, largest)  # every tile and image side the runtime accepts
    profile: Profile = {}
    inputs, _ = manifest.specs_of(model_key)
    for spec_ in inputs:
        profile[spec_.name] = _input_profile(spec_, top, opt_batch, spatial, manifest, model_key)
    return profile


def _input_profile(spec: TensorSpec, top: int, opt_batch: int, spatial: tuple[int, int, int] | None,
                   manifest: Manifest, model_key: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    axes: list[tuple[int, int, int]] = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim >= 0:
            axes.append((dim, dim, dim))
        elif axis == 0:
            axes.append((1, opt_batch, top))
        elif spatial is not None and axis >= 2:
            axes.append(spatial)
        else:
            raise BackendError(f"{model_key}: input {spec.name} has a symbolic axis {axis} ({dim!r}) that no "
                               f"engine profile rule covers for a {manifest.task} bundle; re-export the bundle")
    lo, opt, hi = zip(*axes)
    return tuple(lo), tuple(opt), tuple(hi)


def profile_shapes(profile: Profile) -> dict[str, str]:
    """The profile as ONNX Runtime's TensorRT provider options (``trt_profile_min_shapes``, ...)."""
    def joined(k: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[k])}" for name, shapes in profile.items())

    return {"trt_profile_min_shapes": joined(0), "trt_profile_opt_shapes": joined(1),
            "trt_profile_max_shapes": joined(2)}


def profile_to_manifest(profile: Profile) -> dict[str, list[list[int]]]:
    return {name: [list(s) for s in shapes] for name, shapes in profile.items()}


def this_platform() -> Platform:
    """The installed TensorRT and the first GPU, or a clear error naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingExtraError("TensorRT engines", "gpu") from exc
    return Platform(tensorrt=str(trt.__version__), **_gpu())


def import_cudart(what: str) -> Any:
    """NVIDIA's cuda-python runtime bindings (no torch, no pycuda), or which extra installs them."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise MissingExtraError(f"{what} (cuda-python)", "gpu") from exc
    return cudart


def _gpu() -> dict[str, Any]:
    """Compute capability and name of GPU 0."""
    err, props = import_cudart("TensorRT engines").cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise BackendError(f"no usable CUDA GPU here (cudaGetDeviceProperties failed with {err})")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"compute_capability": f"{props.major}.{props.minor}", "gpu": name.rstrip("\x00")}


def engine_for(manifest: Manifest, model_key: str, bundle: str, platform: Platform | None = None) -> EngineInfo:
    """The engine of ``model_key`` built for ``platform`` (default: this machine), or a refusal
    that says how to get one.

    An engine for another TensorRT version or compute capability would fail to deserialize
    (or worse, run wrongly), so it is never tried: the message names what the bundle has,
    what this machine is, and the two ways on, rebuilding here or running the ONNX file. A
    bundle without engines is told apart first, so that needs no TensorRT here.
    """
    mine = [e for e in manifest.engines if e.model == model_key]
    fix = (f"build one here with 'flare export engine {bundle}', or run the ONNX file instead "
           "(--backend tensorrt, cuda or cpu)")
    if not mine:
        raise BackendError(f"{bundle} has no TensorRT engine for {model_key}; {fix}")
    platform = platform or this_platform()
    for engine in mine:
        if same_release(engine.tensorrt, platform.tensorrt) and engine.compute_capability == platform.compute_capability:
            return engine
    built = "; ".join(f"TensorRT {e.tensorrt} on compute capability {e.compute_capability} ({e.gpu})" for e in mine)
    raise BackendError(f"{bundle}: the {model_key} engine was built for {built}, but this machine has TensorRT "
                       f"{platform.tensorrt} on compute capability {platform.compute_capability} "
                       f"({platform.gpu}); engines only run where they were built: {fix}")


#: The first bytes of a serialized engine: tag "ftrt" (little-endian 0x74727466), a format
#: number, and for format 0 the builder's TensorRT major, minor, patch, build at bytes 24-27
#: (how trtexec's --getPlanVersionOnly reads it, NVIDIA/TensorRT samples/common/sampleEngines.cpp).
PLAN_TAG, PLAN_HEADER = 0x74727466, 28


def plan_version(path: Path) -> str | None:
    """The TensorRT version that built the engine file ``path`` (``"10.16.1"``), or None when the
    header is not one we can read: a second check beside the manifest, on the file itself."""
    with open(path, "rb") as f:
        head = f.read(PLAN_HEADER)
    if len(head) < PLAN_HEADER or int.from_bytes(head[:4], "little") != PLAN_TAG or int.from_bytes(head[4:8], "little"):
        return None
    return ".".join(str(b) for b in head[24:27])


def same_release(a: str, b: str) -> bool:
    """Whether two TensorRT versions are the same major.minor.patch (the build number may differ)."""
    return a.split(".")[:3] == b.split(".")[:3]
