"""One export pipeline for every bundle family: each exporter says what its bundle is in a
:class:`BundleSpec`, and :func:`export_bundle` makes it.

The spec holds what differs between families: the parts (one ONNX file each: the graph, its
example inputs and dynamic axes, the cases its gate feeds, PyTorch fp32's outputs on them,
and how they are judged), the files written rather than exported (a generate bundle's class
embeddings, sampler-step graph and tokenizer), and the manifest's fields. The pipeline does
what is the same for all: the staging folder (removed on any failure), each part's export
and parity gate, the static TensorRT op check (and ``--engine``), the checksums, the
manifest, and the atomic publish, refused when a gate failed unless the user overrides it.

How the manifest records the parts follows the task registry: a task whose bundles hold
several model files (``Task.per_part_precision``) gets ``models``, per-part export notes with
each part's precision, one :class:`GateReport` over every part, and a log line per part; a
one-model task gets that model's notes and report as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flare.export.bundle import bundle_files, library_versions, publish_checked, staging
from flare.export.onnx_export import export_onnx, external_data_files, finalize, tensor_specs
from flare.export.parity import GateReport, Judge, ParityReport, run_onnx
from flare.export.tensorrt import TensorRTOptions, prepare_for_tensorrt
from flare.runtime.core.manifest import Labels, Manifest, ModelIO
from flare.runtime.core.tasks import task_named
from flare.runtime.foundation.progress import log

#: How a part's notes name its precision in a bundle of several parts (what ``Manifest.precision_of`` reads).
PART_PRECISION = {"fp16": "fp16 (fp32 inputs and outputs)"}


@dataclass(frozen=True)
class Fallback:
    """A part whose fp16 graph may fail its gate (a VAE decoder overflows in fp16) is then exported in
    fp32, and the log and the manifest say why: ``what`` names the graph ("the fp16 VAE decoder"),
    ``on`` what the gate ran on ("real latents")."""

    what: str
    on: str


@dataclass
class PartSpec:
    """One ONNX file of a bundle, ``<name>.onnx`` (``name`` is its manifest role): how it is exported
    and the gate it must pass."""

    name: str
    #: The graph to export in a precision (see :func:`flare.export.precision.in_precision`).
    graph: Callable[[str], nn.Module]
    inputs: list[str]
    outputs: list[str]
    #: Input name -> {axis: symbol}.
    dynamic: dict[str, dict[int, str]]
    #: What the exporter traces with.
    example: tuple[torch.Tensor, ...]
    #: What the gate feeds ONNX Runtime (input name -> array), one dict per call ...
    cases: list[dict[str, np.ndarray]]
    #: ... PyTorch fp32's output on each of them ...
    references: list[np.ndarray]
    #: ... and how the pairs are judged (see :mod:`flare.export.parity`).
    judge: Judge
    precision: str = "fp32"
    #: Notes for the manifest besides the exporter's (what an fp16 graph keeps in fp32).
    notes: dict[str, str] = field(default_factory=dict)
    #: int8: quantizes the exported fp32 file (the first path) into the part's file, returning its notes.
    quantize: Callable[[Path, Path], dict[str, str]] | None = None
    fallback: Fallback | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


@dataclass
class FileSpec:
    """A bundle file that is written rather than exported from PyTorch: ``write`` writes it to the
    path it is given and returns its check's report when it has one (the tokenizer), else None."""

    role: str
    name: str
    write: Callable[[Path], ParityReport | None]


@dataclass
class BundleSpec:
    """What one family's exporter decides about its bundle; :func:`export_bundle` does the rest."""

    task: str
    precision: str
    parts: list[PartSpec]
    preprocessing: dict[str, Any]
    source: dict[str, Any]
    labels: Labels | None = None
    #: Manifest ``extra`` besides ``export`` (the notes) and ``tensorrt_ops`` (the op check).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Written after the parts, in this order.
    files: list[FileSpec] = field(default_factory=list)


def torch_outputs(graph: nn.Module, cases: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """PyTorch's output on each case (its arrays in order as the graph's arguments): a gate's references."""
    with torch.inference_mode():
        return [graph(*(torch.from_numpy(v) for v in case.values())).float().numpy() for case in cases]


def export_bundle(spec: BundleSpec, out: Path, tensorrt: TensorRTOptions = TensorRTOptions(),
                  allow_parity_failure: bool = False) -> tuple[Path, ParityReport | GateReport]:
    """Export, check and write the bundle ``spec`` describes to ``out``; raises :class:`ParityError`
    when a gate refuses (and :class:`UnsupportedOpError` when TensorRT would), leaving ``out`` as it was."""
    out = Path(out)
    task = task_named(spec.task)
    per_part = task.per_part_precision
    with staging(out, Manifest.FILE, f"{out} exists and is not a bundle; choose an empty or new --out") as stage:
        reports: dict[str, ParityReport] = {}
        notes: dict[str, dict[str, str]] = {}
        for part in spec.parts:
            reports[part.name], notes[part.name] = _export_part(part, stage, per_part)
        files = {part.name: part.file for part in spec.parts}
        for part in spec.parts:  # a model over 2 GiB keeps its weights beside it: checksummed like the rest
            files.update({f"{part.name}_weights{i or ''}": name
                          for i, name in enumerate(external_data_files(stage / part.file))})
        for extra in spec.files:
            report = extra.write(stage / extra.name)
            files[extra.role] = extra.name
            if report is not None:
                reports[extra.role] = report
        gate: ParityReport | GateReport
        if per_part:
            gate, export_notes = GateReport(reports), notes
            models = {role: ModelIO(*tensor_specs(stage / name)) for role, name in files.items() if role in task.parts}
        else:
            (gate,), (export_notes,), models = reports.values(), notes.values(), {}
        inputs, outputs = tensor_specs(stage / spec.parts[0].file)
        manifest = Manifest(
            task=spec.task, files=bundle_files(stage, files), inputs=inputs, outputs=outputs, models=models,
            precision=spec.precision, preprocessing=spec.preprocessing, labels=spec.labels, parity=gate.to_dict(),
            source=spec.source, versions=library_versions(), extra={"export": export_notes, **spec.extra})
        prepare_for_tensorrt(stage, out, manifest, tensorrt)
        return publish_checked(stage, out, gate, allow_parity_failure), gate


def _export_part(part: PartSpec, stage: Path, per_part: bool) -> tuple[ParityReport, dict[str, str]]:
    """Export ``part`` into ``stage`` and gate it (again in fp32 when its fallback says so)."""
    path = stage / part.file
    notes = _write_onnx(part, path, part.precision, per_part)
    if part.quantize is not None:
        fp32_path = path.with_name(f"{part.name}.fp32.onnx")
        path.rename(fp32_path)
        notes.update(part.quantize(fp32_path, path))
        fp32_path.unlink()
    notes.update(part.notes)
    precision = part.precision
    report = _gate(part, path, precision)
    if part.fallback is not None and not report.passed:
        log(f"{part.fallback.what} fails on {part.fallback.on} ({report.summary()}); keeping it in fp32")
        notes["fp32_reason"] = f"{precision} failed its gate on {part.fallback.on}: {report.summary()}"
        precision = "fp32"
        notes.update(_write_onnx(part, path, precision, per_part))
        report = _gate(part, path, precision)
    if per_part:
        notes["precision"] = PART_PRECISION.get(precision, precision)
        log(f"{part.name}: {report.summary()}")
    return report, notes


def _write_onnx(part: PartSpec, path: Path, precision: str, announce: bool) -> dict[str, str]:
    """Export the part's graph in ``precision`` to ``path`` and finalize it; returns the exporter's notes."""
    if announce:
        log(f"exporting {part.name} ({precision})")
    notes = export_onnx(part.graph(precision), part.example, path, part.inputs, part.outputs, part.dynamic)
    notes.update(finalize(path))
    return notes


def _gate(part: PartSpec, path: Path, precision: str) -> ParityReport:
    """ONNX Runtime on every case of ``part``, judged against PyTorch fp32's outputs."""
    candidates, backend = [], ""
    for case in part.cases:
        got, backend = run_onnx(path, case)
        candidates.append(got)
    return part.judge(list(zip(part.references, candidates)), precision, backend)
