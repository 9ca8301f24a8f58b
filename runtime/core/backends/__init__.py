"""Inference backends behind one interface (:class:`flare.runtime.core.backends.base.Runner`).

One small class per backend, in the spirit of Polygraphy's runners: ONNX Runtime (with the
TensorRT, CUDA or CPU execution provider), native TensorRT engines and OpenVINO.
"""

from flare.runtime.core.backends.base import Runner, open_runner

__all__ = ["Runner", "open_runner"]
