"""FLARE Edge: ``flare.training`` (PyTorch), ``flare.export`` (ONNX / TensorRT), ``flare.runtime`` (no torch)
and the ``flare`` command line (:mod:`flare.cli`)."""
