"""PyTorch -> ONNX with symbolic dims, then the checker, shape inference and simplification.

We use torch's ``torch.export``-based exporter (the default since PyTorch 2.9, via
onnxscript) and fall back to the TorchScript exporter only when it fails for a model, noting
which one ran. Models under 2 GiB are written as one self-contained file, so a bundle is
easy to copy to a Jetson.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from flare.runtime.core.manifest import TensorSpec
from flare.runtime.foundation.errors import FlareError

OPSET = 18
_TWO_GIB = 2 * 1024**3


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path,
                input_names: list[str], output_names: list[str],
                dynamic: dict[str, dict[int, str]]) -> dict[str, str]:
    """Export ``model`` to ``path``; ``dynamic`` maps input names to {axis: symbol}.

    Returns notes for the manifest (which exporter ran, opset).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > _TWO_GIB // 2
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name in input_names:
        axes = dynamic.get(name, {})
        shapes.append({axis: dims.setdefault(sym, torch.export.Dim(sym)) for axis, sym in axes.items()} or None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(path), input_names=input_names, output_names=output_names,
                              dynamic_shapes=tuple(shapes), dynamo=True, opset_version=OPSET,
                              external_data=large, verbose=False)
        exporter = "torch.export"
    except Exception as first:  # noqa: BLE001 - any dynamo failure: try the TorchScript exporter
        axes_all = {n: dict(dynamic.get(n, {})) for n in input_names}
        axes_all.update({n: {0: "batch"} for n in output_names})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, example, str(path), input_names=input_names, output_names=output_names,
                                  dynamic_axes=axes_all, dynamo=False, opset_version=17)
        except Exception as second:  # noqa: BLE001
            raise FlareError(f"ONNX export failed with both exporters: {first!r}; then {second!r}") from second
        exporter = "torchscript"
    return {"exporter": exporter, "opset": str(OPSET if exporter == "torch.export" else 17)}


def finalize(path: Path, simplify: bool = True) -> dict[str, str]:
    """Check the model, run shape inference and (when onnxslim is there) simplify it."""
    import onnx

    notes = {}
    if external_data_files(path):  # over 2 GiB: onnxslim and in-memory checks cannot hold it
        simplify = False
        notes["simplifier"] = "none (weights in an external data file)"
    if simplify:
        try:
            import onnxslim

            model = onnxslim.slim(onnx.load(str(path)))
            onnx.save(model, str(path))
            notes["simplifier"] = f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()
        except ImportError:
            notes["simplifier"] = "none (onnxslim not installed)"
    onnx.checker.check_model(str(path), full_check=False)
    onnx.shape_inference.infer_shapes_path(str(path), str(path), check_type=True, strict_mode=False)
    onnx.checker.check_model(str(path), full_check=True)
    return notes


def tensor_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file as manifest entries (symbolic dims as names)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return TensorSpec(name=v.name, shape=shape, dtype=helper.tensor_dtype_to_np_dtype(t.elem_type).name)

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def external_data_files(path: Path) -> list[str]:
    """Names of the external weight files an ONNX model refers to (beside it), for the manifest."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    names = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return sorted(names)
