"""Inference backends behind one interface (:class:`flare.runtime.core.backends.base.Runner`).

One small class per backend, in the spirit of Polygraphy's runners: ONNX Runtime (with the
TensorRT, CUDA or CPU execution provider), native TensorRT engines and OpenVINO.
:func:`flare.runtime.core.backends.open.open_runner` picks one for a bundle's model file;
:class:`flare.runtime.core.backends.options.RunnerOptions` is what a caller may choose.
"""
