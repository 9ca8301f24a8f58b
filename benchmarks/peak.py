"""The machine's reachable peak, measured in the same run: one large GEMM per library family.

"GFLOP/s" alone does not tell a reader whether a backend is near the limit. So beside each
model figure ``flare bench`` puts the rate of a square matrix multiply run through the same
library, device and precision (an ONNX ``MatMul`` through the same runner for ONNX Runtime
and OpenVINO, ``torch.matmul`` for torch). int8 uses the form our int8 bundles use, a QDQ
graph (int8 weights and activations around the ``MatMul``), so each library picks its own
int8 kernels for it exactly as it does for the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flare.benchmarks.stats import time_calls

INPUT, OUTPUT = "a", "c"


def gemm_onnx(path: Path, n: int, precision: str) -> Path:
    """Write ``c = a @ w`` with an ``n`` x ``n`` constant ``w`` at ``precision``; the input is
    float32 (float16 for fp16) so the runner feeds it like a model input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    io_type = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    shape = ["m", n]
    nodes, inits = [], []
    if precision == "int8":
        scale = numpy_helper.from_array(np.array(4.0 / 127, np.float32), "s")
        zero = numpy_helper.from_array(np.array(0, np.int8), "z")
        w_scale = float(np.abs(weight).max() / 127)
        w_q = np.clip(np.round(weight / w_scale), -127, 127).astype(np.int8)
        inits += [scale, zero, numpy_helper.from_array(w_q, "wq"),
                  numpy_helper.from_array(np.array(w_scale, np.float32), "ws")]
        nodes += [helper.make_node("QuantizeLinear", [INPUT, "s", "z"], ["aq"]),
                  helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"]),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["wd"]),
                  helper.make_node("MatMul", ["ad", "wd"], ["cf"]),
                  helper.make_node("QuantizeLinear", ["cf", "s", "z"], ["cq"]),
                  helper.make_node("DequantizeLinear", ["cq", "s", "z"], [OUTPUT])]
    else:
        dtype = np.float16 if precision == "fp16" else np.float32
        inits.append(numpy_helper.from_array(weight.astype(dtype), "w"))
        nodes.append(helper.make_node("MatMul", [INPUT, "w"], [OUTPUT]))
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info(INPUT, io_type, shape)],
                              [helper.make_tensor_value_info(OUTPUT, io_type, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def gemm_input(n: int, precision: str) -> np.ndarray:
    """The ``a`` operand for :func:`gemm_onnx`."""
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    return a.astype(np.float16) if precision == "fp16" else a


def best_gflops(call, n: int, repeats: int = 5, sync=None) -> float:
    """The fastest of ``repeats`` calls of an n x n x n GEMM, in GFLOP/s (after 2 warm-ups)."""
    latencies, _ = time_calls(call, warmup=2, iterations=repeats, sync=sync)
    return 2.0 * n**3 / min(latencies) / 1e9
