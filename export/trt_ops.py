"""Static check that TensorRT's ONNX parser takes every node of an exported graph.

Run on every export, with or without ``--engine``: a bundle is meant to reach TensorRT on
the deployment GPU, and a node the parser rejects is much cheaper to learn about here, on
the machine that has the PyTorch model, than on a Jetson. The check reads the graph only
(no TensorRT needed, so it runs in CI for all three model families) against the table in
:mod:`flare.export.trt_op_table`, which names the document and TensorRT version it was
taken from, plus the attribute restrictions that table states in words and we check in
code (Resize's antialias, ScatterND's reduction, int8 Q/DQ with zero points 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flare.export.trt_op_table import SOURCE, SUPPORTED
from flare.runtime.foundation.errors import FlareError

#: Domains whose ops the table covers (the default ONNX domain).
ONNX_DOMAINS = ("", "ai.onnx")


class UnsupportedOpError(FlareError):
    """An exported graph has a node TensorRT's ONNX parser does not take."""


@dataclass
class OpCheck:
    """The ops of one model file and the nodes TensorRT would refuse, with why."""

    model: str
    ops: list[str]
    unsupported: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ops": self.ops, "unsupported": self.unsupported}


def check_model(path: Path) -> OpCheck:
    """Check every node of ``path``, subgraphs (If / Loop bodies) included."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = list(_nodes(model.graph))
    constants = set(initializers) | {out for n in nodes if n.op_type == "Constant" for out in n.output}
    ops: set[str] = set()
    problems: list[str] = []
    for node in nodes:
        domain = node.domain or ""
        op = node.op_type if domain in ONNX_DOMAINS else f"{domain}::{node.op_type}"
        ops.add(op)
        reason = _refusal(node, domain, initializers, constants)
        if reason:
            problems.append(f"node '{node.name or node.output[0]}' ({op}): {reason}")
    return OpCheck(model=Path(path).name, ops=sorted(ops), unsupported=problems)


def _nodes(graph: Any):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def _attribute(node: Any, name: str) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return None


def _text(node: Any, name: str, default: str) -> str:
    value = _attribute(node, name)
    return value.decode() if isinstance(value, bytes) else default if value is None else str(value)


def _refusal(node: Any, domain: str, initializers: dict[str, Any], constants: set[str]) -> str | None:
    """Why TensorRT's parser would refuse ``node``, or None."""
    if domain not in ONNX_DOMAINS:
        return f"an op of the {domain!r} domain, which TensorRT's ONNX parser does not know (ONNX Runtime does)"
    op = node.op_type
    if op not in SUPPORTED:
        return "not in TensorRT's ONNX operator table"
    if op == "Resize":
        if _attribute(node, "antialias"):
            return "Resize with antialias, which TensorRT does not implement"
        # operators.md lists nearest and linear only, but the parser's Resize importer
        # (onnxOpImporters.cpp) maps cubic to kCUBIC too; it refuses these two transformations.
        if _text(node, "mode", "nearest") not in ("nearest", "linear", "cubic"):
            return f"Resize mode {_text(node, 'mode', '')!r}; TensorRT takes nearest, linear or cubic"
        transformation = _text(node, "coordinate_transformation_mode", "half_pixel")
        if transformation in ("tf_crop_and_resize", "half_pixel_symmetric"):
            return f"Resize with {transformation}, which TensorRT's parser refuses"
    if op == "ScatterND" and _text(node, "reduction", "none") != "none":
        return "ScatterND with a reduction, which TensorRT does not implement"
    if op.startswith("Reduce") and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
        return f"{op} with axes computed at run time; TensorRT needs them as a constant"
    if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
        return _zero_point_refusal(initializers.get(node.input[2]))
    return None


def _zero_point_refusal(zero_point: Any) -> str | None:
    """TensorRT's explicit quantization is symmetric: signed int8 (or fp8) zero points, all 0."""
    import onnx
    from onnx import numpy_helper

    if zero_point is None:  # computed at run time: nothing to read here
        return None
    if zero_point.data_type == onnx.TensorProto.UINT8:
        return "uint8 Q/DQ; TensorRT takes signed int8 with zero point 0 (export int8 symmetric)"
    if zero_point.data_location != onnx.TensorProto.EXTERNAL and numpy_helper.to_array(zero_point).any():
        return "a non-zero zero point; TensorRT takes symmetric Q/DQ (zero point 0)"
    return None


def check_models(paths: dict[str, Path], allow_unsupported: bool = False) -> dict[str, Any]:
    """Check each model file; raise :class:`UnsupportedOpError` naming the first nodes unless allowed.

    Returns what the manifest records: the table's source and, per model, its ops and any
    unsupported nodes (kept when ``allow_unsupported`` let them through).
    """
    checks = {key: check_model(path) for key, path in paths.items()}
    bad = [(key, c) for key, c in checks.items() if c.unsupported]
    if bad and not allow_unsupported:
        key, first = bad[0]
        more = sum(len(c.unsupported) for _, c in bad) - 1
        raise UnsupportedOpError(
            f"{first.model}: {first.unsupported[0]}{f' (and {more} more)' if more else ''}; checked against "
            f"{SOURCE}. Pass --allow-unsupported-ops to write the bundle anyway (it then runs on ONNX Runtime and "
            "OpenVINO but not on TensorRT)")
    return {"checked_against": SOURCE, "passed": not bad,
            "models": {key: c.to_dict() for key, c in checks.items()}}
