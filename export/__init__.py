"""Export trained PyTorch models to ONNX (and TensorRT) bundles, each checked against PyTorch."""
