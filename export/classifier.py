"""``flare export classifier``: a trained run (or a bare architecture) to a checked bundle.

The bundle is built in ``<out>.partial`` and only renamed to ``<out>`` when ONNX Runtime
agrees with PyTorch on real images from the data (the run's own test split, or ``--calib``).
A failing export is refused unless the user overrides the gate, and then the manifest says
``parity.passed: false`` for every later reader to see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flare.export.parity import ParityReport, judge_outputs
from flare.export.pipeline import BundleSpec, PartSpec, export_bundle
from flare.export.precision import in_precision
from flare.export.tensorrt import TensorRTOptions
from flare.runtime.core.artifact import identify, sha256
from flare.runtime.core.manifest import Labels
from flare.runtime.core.preprocess import PreprocessSpec, normalize, resize
from flare.runtime.core.runs import ClassifierRun
from flare.runtime.core.taxonomy import FINE_CLASSES, MACRO_OF
from flare.runtime.foundation.errors import UsageError
from flare.runtime.foundation.paths import check_apart
from flare.runtime.io.images import list_images, load_rgb

INPUT, OUTPUT = "image", "logits"


@dataclass
class Source:
    """What is being exported: the model, its labels, preprocessing and provenance."""

    model: nn.Module
    name: str
    labels: Labels
    spec: PreprocessSpec
    info: dict[str, Any]
    image_paths: list[Path]


def resolve_source(run_or_name: str, num_classes: int | None, weights: Path | None,
                   input_size: int | None) -> Source:
    """A RUN folder gives its best checkpoint and split; a model name gives that architecture."""
    path = Path(run_or_name)
    if path.is_dir() and identify(path) is not None:
        given = [name for name, value in (("--num-classes", num_classes), ("--weights", weights),
                                          ("--input-size", input_size)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to a bare model name; the RUN {path} has its own "
                             "classes, weights and input size")
        from flare.training.classifiers.train import build_from_run
        from flare.training.data.folders import resolve_root
        from flare.training.data.splits import read_split

        model, run, ckpt = build_from_run(path)  # refuses an SR or diffusion run by name
        root = resolve_root(Path(run.train.data))
        order = {"test": 0, "val": 1, "train": 2}
        images = [root / r["path"] for r in sorted(read_split(path / "split.csv"), key=lambda r: order[r["split"]])]
        labels = Labels(classes=run.classes, macro_of=run.macro_of, level=run.train.level)
        info = {"run": str(path.resolve()), "checkpoint": str(ckpt.resolve()), "sha256": sha256(ckpt),
                "model": run.train.model}
        return Source(model, run.train.model, labels, run.preprocessing, info, images)
    if path.exists():
        raise UsageError(f"{path} is not a training run (no {ClassifierRun.FILE}); give a RUN folder from "
                         "'flare train' or a timm model name")
    if "/" in run_or_name or "\\" in run_or_name:
        raise UsageError(f"{path} does not exist: give a training RUN folder or a timm model name")
    from flare.training.classifiers.models import create_classifier, load_weights

    n = len(FINE_CLASSES) if num_classes is None else num_classes
    spec = PreprocessSpec(size=input_size or 224)
    model = create_classifier(run_or_name, n, spec.size)
    info: dict[str, Any] = {"model": run_or_name, "checkpoint": None, "sha256": None}
    if weights is not None:
        load_weights(model, weights)
        info.update(checkpoint=str(Path(weights).resolve()), sha256=sha256(Path(weights)))
    if n == len(FINE_CLASSES):
        labels = Labels(list(FINE_CLASSES), dict(MACRO_OF), "fine")
    else:
        names = [f"class_{i}" for i in range(n)]
        labels = Labels(names, {c: c for c in names}, "fine")
    return Source(model.eval(), run_or_name, labels, spec, info, [])


def parity_images(source: Source, calib: Path | None, samples: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Resized uint8 NHWC images (``--calib`` or the run's split), or random pixels as a last resort.

    The gate compares models on these: :func:`normalize` makes the float input of PyTorch and
    of a plain bundle, and a ``--fuse-preprocess`` bundle takes them as they are.
    """
    paths = source.image_paths
    where = "images from the run's split"
    if calib is not None:
        if not Path(calib).is_dir():
            raise UsageError(f"--calib {calib} is not a folder of images")
        paths = [Path(calib) / rel for rel in list_images(Path(calib))[0]]
        where = f"images from {calib}"
        if not paths:
            raise UsageError(f"--calib {calib} holds no images")
    if paths:
        chosen = paths[:samples] if len(paths) <= samples else \
            [paths[i] for i in np.linspace(0, len(paths) - 1, samples).astype(int)]
        return np.stack([resize(load_rgb(p, stretch=source.spec.stretch), source.spec) for p in chosen]), where
    rng = np.random.default_rng(seed)
    size = source.spec.size
    return rng.integers(0, 256, (samples, size, size, 3), dtype=np.uint8), \
        "random pixels (no data given: pass --calib DIR to check on real images)"


class FusedPreprocess(nn.Module):
    """The scaling and normalisation of :func:`normalize` inside the graph: uint8 NHWC in.

    Same arithmetic in the same order (times 1/255, minus mean, over std, in float32), so the
    fused bundle sees the very pixels the plain one does; the parity gate checks it.
    """

    def __init__(self, model: nn.Module, spec: PreprocessSpec) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 1, 1, 3))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 1, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in NHWC, then transpose into a contiguous copy: OpenVINO 2026.4 runs the
        # int8 (QDQ) export of this form right; with the transpose first, or without the copy,
        # its top-1 agreement fell to 12-13% on the demo run (ONNX Runtime was right either way).
        x = (x.float() * (1.0 / 255.0) - self.mean) / self.std
        return self.model(x.permute(0, 3, 1, 2).contiguous())


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray) -> dict[str, str]:
    """Static int8 (QDQ, per-channel symmetric weights) with ONNX Runtime's quantizer, calibrated on real inputs
    (``calibration`` as the model takes them: float NCHW, or uint8 NHWC for a fused model); returns the
    manifest's note on it."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    # Symmetric int8 activations and weights (S8S8, zero points 0): the form TensorRT's
    # explicit quantization takes, and ONNX Runtime's own default.
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return {"quantizer": "onnxruntime.quantization static QDQ, per-channel"}


def export_classifier(run_or_name: str, out: Path, *, num_classes: int | None = None, weights: Path | None = None,
                      precision: str = "fp32", calib: Path | None = None, samples: int = 32,
                      input_size: int | None = None, allow_parity_failure: bool = False,
                      tensorrt: TensorRTOptions = TensorRTOptions(),
                      fuse_preprocess: bool = False) -> tuple[Path, ParityReport]:
    """Export, check and write the bundle; raises :class:`ParityError` when the gate refuses.

    ``fuse_preprocess`` puts the scaling and normalisation into the graph (see
    :class:`FusedPreprocess`); the gate then feeds the fused model uint8 images and PyTorch
    the same images normalised on the host.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--precision must be fp32, fp16 or int8, not {precision!r}")
    if Path(run_or_name).exists():
        check_apart((Path(out), "--out"), [(Path(run_or_name), "RUN")])
    source = resolve_source(run_or_name, num_classes, weights, input_size)
    images, where = parity_images(source, calib, samples)
    floats = np.stack([normalize(image, source.spec) for image in images])
    with torch.inference_mode():
        reference = torch.cat([source.model(torch.from_numpy(floats[i:i + 16])) for i in range(0, len(floats), 16)]).numpy()
    inputs = images if fuse_preprocess else floats
    graph = in_precision(source.model)
    part = PartSpec(
        "model", graph=(lambda precision: FusedPreprocess(graph(precision), source.spec)) if fuse_preprocess else graph,
        inputs=[INPUT], outputs=[OUTPUT], dynamic={INPUT: {0: "batch"}}, example=(torch.from_numpy(inputs[:2].copy()),),
        cases=[{INPUT: inputs}], references=[reference], judge=judge_outputs(where), precision=precision,
        quantize=(lambda fp32, quantized: quantize_int8(fp32, quantized, inputs)) if precision == "int8" else None)
    spec = BundleSpec("classify", precision, [part], labels=source.labels, source=source.info,
                      preprocessing=replace(source.spec, fused=fuse_preprocess).to_dict(),
                      extra={"output_kind": "logits", "architecture": source.name})
    return export_bundle(spec, out, tensorrt, allow_parity_failure)
