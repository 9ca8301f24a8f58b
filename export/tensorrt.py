"""TensorRT 10 engine building from an exported ONNX file (``--engine``).

Written to the documented TensorRT 10 Python API: ``Builder`` with an explicit-batch network
(the only kind in TensorRT 10), ``OnnxParser``, one optimization profile per dynamic input,
``BuilderFlag.FP16`` / ``INT8`` and ``build_serialized_network``. TensorRT cannot be
installed on our CI machines, so this is exercised only by tests marked ``tensorrt``.
An engine only runs on the GPU model and TensorRT version that built it; the ONNX file in
the bundle stays the portable artefact.
"""

from __future__ import annotations

from pathlib import Path

from flare.runtime.errors import FlareError

#: input name -> (min shape, opt shape, max shape) of the optimization profile.
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def batch_profile(name: str, sample: tuple[int, ...], max_batch: int) -> Profile:
    """A profile over the batch only (fixed sample shape); TensorRT tunes for half the maximum."""
    return {name: ((1, *sample), (max(1, max_batch // 2), *sample), (max_batch, *sample))}


def build_engine(onnx_path: Path, plan_path: Path, precision: str, profile: Profile,
                 workspace_gib: float = 4.0) -> Path:
    """Build and serialize an engine for ``onnx_path``; raise a clear error without TensorRT."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise FlareError("--engine needs TensorRT 10: pip install 'flare-edge[gpu]' on an NVIDIA machine "
                         "(the ONNX bundle runs everywhere without it)") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FlareError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        # The ONNX file already carries explicit Q/DQ nodes from our quantizer, which TensorRT
        # honours directly; INT8 plus FP16 lets non-quantized layers run in half precision.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FlareError(f"TensorRT could not build an engine for {onnx_path} (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    return plan_path
