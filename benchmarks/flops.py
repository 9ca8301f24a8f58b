"""FLOPs of an ONNX graph, counted from its operators and inferred shapes (not a constant).

Counted: the multiply-adds of Conv, ConvTranspose, MatMul and Gemm (and their integer
forms), two FLOPs each, the convention of the FLOP counts published with models
(torchvision's ``_ops`` are multiply-adds; ``torch.utils.flop_counter`` counts two per
multiply-add). Element-wise ops, pooling, normalisation and softmax are left out: they are a
few percent of a CNN or ViT and are memory-bound, not what "GFLOP/s against a GEMM peak"
measures. int8 (QDQ) graphs count the same arithmetic as their fp32 source.

Shapes come from ONNX Runtime's symbolic shape inference (``onnxruntime.tools``), with every
symbolic input dimension set to the batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod
from pathlib import Path

from flare.runtime.foundation.errors import BundleError

COUNTED = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MatMul", "MatMulInteger", "QLinearMatMul", "Gemm")


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass at ``batch``, and how they split by operator type."""

    batch: int
    flops: int
    by_op: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"batch": self.batch, "flops": self.flops, "gflops": self.flops / 1e9, "by_op": dict(self.by_op),
                "counted": list(COUNTED), "convention": "2 FLOPs per multiply-add"}


def count_flops(path: Path, batch: int = 1) -> FlopCount:
    """FLOPs of the model at ``path`` with every symbolic input dimension set to ``batch``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param or dim.dim_value <= 0:
                dim.ClearField("dim_param")
                dim.dim_value = batch
    del model.graph.value_info[:]
    for value in model.graph.output:  # re-inferred from the fixed inputs
        value.type.tensor_type.ClearField("shape")
    # ONNX Runtime's symbolic inference follows shapes through Shape -> Range -> Reshape chains
    # that torch.export leaves for a dynamic batch, where onnx's own inference gives up.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # noqa: BLE001 - its failures are bare Exceptions/asserts on odd graphs
        raise BundleError(f"{path}: cannot count FLOPs, shape inference failed ({type(exc).__name__}: {exc})") from exc
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in model.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.dim_value > 0 for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    by_op: Counter[str] = Counter()
    for node in inferred.graph.node:
        if node.op_type in COUNTED:
            by_op[node.op_type] += _node_flops(node, shapes, path)
    return FlopCount(batch=batch, flops=sum(by_op.values()), by_op=dict(by_op))


def _node_flops(node, shapes: dict[str, list[int]], path: Path) -> int:
    """Multiply-adds x 2 of one counted node, from its input and output shapes."""
    op = node.op_type
    weight_at = 3 if op == "QLinearConv" else 1  # QLinear ops interleave scales and zero points

    def shape(name: str) -> list[int]:
        if name not in shapes:
            raise BundleError(f"{path}: cannot count FLOPs, the shape of '{name}' (input of {op} node "
                              f"'{node.name}') is not known after shape inference")
        return shapes[name]

    if op in ("Conv", "ConvInteger", "QLinearConv"):
        weight = shape(node.input[weight_at])  # (C_out, C_in / group, k...)
        return 2 * prod(shape(node.output[0])) * prod(weight[1:])
    if op == "ConvTranspose":
        x, weight = shape(node.input[0]), shape(node.input[1])  # weight: (C_in, C_out / group, k...)
        return 2 * prod(x) * prod(weight[1:])
    # Products from the operands alone: an output shape can be left symbolic by ops before it.
    if op == "Gemm":
        a, b = shape(node.input[0]), shape(node.input[1])
        attrs = {attr.name: attr.i for attr in node.attribute}
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return 2 * m * n * k
    a, b = shape(node.input[0]), shape(node.input[3 if op == "QLinearMatMul" else 1])  # (..., M, K) x (..., K, N)
    a2, b2 = ([1] + a if len(a) == 1 else a), (b + [1] if len(b) == 1 else b)  # numpy's vector rule
    rank = max(len(a2), len(b2)) - 2
    lead_a, lead_b = [1] * (rank - len(a2) + 2) + a2[:-2], [1] * (rank - len(b2) + 2) + b2[:-2]
    batch = [max(x, y) for x, y in zip(lead_a, lead_b)]  # broadcast leading dimensions
    return 2 * prod(batch) * a2[-2] * b2[-1] * a2[-1]
