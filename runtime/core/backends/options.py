"""What a caller may choose about running a model, as one value passed from the command line to the runner."""

from __future__ import annotations

from dataclasses import dataclass

from flare.runtime.foundation.errors import UsageError

#: What ``--backend`` may name: ONNX Runtime choices (auto picks the best provider that starts),
#: the bundle's TensorRT engine, or OpenVINO on the ONNX file.
BACKENDS = ("auto", "tensorrt", "cuda", "cpu", "trt-engine", "openvino")


@dataclass(frozen=True)
class RunnerOptions:
    """How to run a bundle's models here.

    ``backend`` is one of :data:`BACKENDS`. ``spin=False`` stops ONNX Runtime's CPU threads
    spin-waiting between ops, for callers whose own threads share the cores (triage decodes
    beside the model). ``cuda_graph`` asks the CUDA provider to capture the model as a CUDA
    graph. ``threads`` caps the CPU threads of one inference (default: the backend's, one
    per core), for runners that share a machine with others (the Ray engine's actors).
    """

    backend: str = "auto"
    spin: bool = True
    cuda_graph: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, not {self.threads}")
