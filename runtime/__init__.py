"""FLARE Edge runtime: run exported bundles with numpy, Pillow and ONNX Runtime, no torch."""
