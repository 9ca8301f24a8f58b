"""What ``flare bench`` measures: a bundle as it is, or a RUN / model name exported on the fly.

A bundle is benchmarked as it holds (its one precision and variant). A training RUN or a
timm name (or ``googlenet``) is exported to every requested precision and variant under
``OUT/bundles``, all from the same weights, so the comparison is of one model: a RUN's best
checkpoint, or for a name the ``--weights`` given or a random initialisation saved once to
``OUT/source`` (speed does not depend on the weights; agreement between precisions needs
them to be the same). Bundles already there from the same weights are reused.

The evaluation images (top-1 agreement, and accuracy where labels are known) are the RUN's
test split, else ``--images DIR`` (labelled when its sub-folders are the model's classes),
else a synthetic sky, which also calibrates int8 for a name. The end-to-end triage reads a
survey folder of the same images.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from flare.runtime.tasks.classify import Classifier
from flare.runtime.core.artifact import identify, sha256
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import PreprocessSpec, resize
from flare.runtime.core.runs import ClassifierRun
from flare.runtime.core.taxonomy import fine_from_folder
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.runtime.foundation.progress import log
from flare.runtime.io.images import list_images, load_rgb

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class EvalSet:
    """Resized uint8 NHWC images, their class indices when known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    where: str


@dataclass
class BenchSource:
    """Everything the benchmark runs: bundles by (precision, variant), the torch model, images."""

    what: str
    architecture: str
    spec: PreprocessSpec
    classes: list[str]
    bundles: dict[tuple[str, str], Path]
    eval: EvalSet
    survey: Path
    torch_model: Callable[[], Any] | None = None
    torch_note: str = ""
    notes: list[str] = field(default_factory=list)


def resolve(bundle_or_name: str, out: Path, *, precisions: list[str] | None, variants: list[str],
            images: Path | None, input_size: int | None, weights: Path | None, eval_count: int,
            survey_count: int) -> BenchSource:
    """Open or make the bundles for ``bundle_or_name`` and gather the images to run them on."""
    path = Path(bundle_or_name)
    if path.is_dir() and (path / Manifest.FILE).is_file():
        return _from_bundle(path, out, precisions, variants, images, input_size, weights, eval_count, survey_count)
    if path.is_dir() and identify(path) is ClassifierRun:
        if input_size is not None or weights is not None:
            raise UsageError(f"--input-size and --weights only apply to a model name; the RUN {path} has its own")
        return _from_run(path, out, precisions or list(PRECISIONS), variants, images, eval_count, survey_count)
    if path.exists() or "/" in bundle_or_name or os.sep in bundle_or_name:
        raise UsageError(f"{path} is not a bundle (no {Manifest.FILE}) nor a classifier training run: give a "
                         "bundle folder, a RUN from 'flare train', or a timm model name")
    return _from_name(bundle_or_name, out, precisions or list(PRECISIONS), variants, images, input_size or 224,
                      weights, eval_count, survey_count)


def _from_bundle(path: Path, out: Path, precisions: list[str] | None, variants: list[str], images: Path | None,
                 input_size: int | None, weights: Path | None, eval_count: int, survey_count: int) -> BenchSource:
    manifest = Classifier.load_manifest(path)  # checksums and task: a damaged bundle is refused here, in one line
    if input_size is not None or weights is not None:
        raise UsageError(f"--input-size and --weights only apply to a model name; the bundle {path} has its own")
    spec = PreprocessSpec.from_dict(manifest.preprocessing)
    variant = "fused" if spec.fused else "plain"
    if precisions and precisions != [manifest.precision]:
        raise UsageError(f"{path} holds {manifest.precision} only; to compare precisions give the RUN or model "
                         f"name it came from (--precision {','.join(precisions)} asked for more)")
    if variant not in variants:
        raise UsageError(f"{path} is a {variant} bundle but --variants asks for {','.join(variants)}")
    classes = manifest.labels.classes
    architecture = str(manifest.extra.get("architecture") or manifest.source.get("model"))
    plain = replace(spec, fused=False)
    run = Path(manifest.source["run"]) if manifest.source.get("run") else None
    torch_model, note = _torch_from_bundle(manifest, architecture, len(classes), plain.size)
    evalset = _eval_images(images, run if run is not None and run.is_dir() else None, out, plain, classes,
                           eval_count)
    return BenchSource(f"bundle {path}", architecture, plain, classes, {(manifest.precision, variant): path}, evalset,
                       _survey(images, out, survey_count), torch_model, note)


def _torch_from_bundle(manifest: Manifest, architecture: str, n_classes: int,
                       size: int) -> tuple[Callable[[], Any] | None, str]:
    """The bundle's source weights in torch, when they are on this machine and unchanged."""
    checkpoint, digest = manifest.source.get("checkpoint"), manifest.source.get("sha256")
    if not checkpoint:
        return None, "the bundle was exported from random weights: there are no source weights for torch to run"
    if not Path(checkpoint).is_file() or sha256(Path(checkpoint)) != digest:
        return None, f"the bundle's source weights {checkpoint} are not on this machine (or changed since export)"
    try:
        from flare.training.classifiers.models import create_classifier, load_weights
    except ImportError:
        return None, "torch is not installed (pip install 'flare-edge[train]')"

    def build() -> Any:
        model = create_classifier(architecture, n_classes, size)
        load_weights(model, Path(checkpoint))
        return model.eval()
    return build, ""


def _from_run(run: Path, out: Path, precisions: list[str], variants: list[str], images: Path | None,
              eval_count: int, survey_count: int) -> BenchSource:
    from flare.training.classifiers.train import build_from_run

    _, config, checkpoint = build_from_run(run)  # also refuses a damaged or mismatched checkpoint
    digest = sha256(checkpoint)
    bundles = {(p, v): _exported(out, p, v, digest, lambda p=p: (str(run), dict(precision=p)))
               for p in precisions for v in variants}
    evalset = _eval_images(images, run, out, config.preprocessing, config.classes, eval_count)
    return BenchSource(f"run {run} ({checkpoint.name})", config.train.model, config.preprocessing, config.classes,
                       bundles, evalset, _survey(images, out, survey_count),
                       lambda: build_from_run(run)[0], "")


def _from_name(name: str, out: Path, precisions: list[str], variants: list[str], images: Path | None, size: int,
               weights: Path | None, eval_count: int, survey_count: int) -> BenchSource:
    import torch

    from flare.training.checkpoints import save_weights
    from flare.training.classifiers.models import create_classifier, load_weights
    from flare.runtime.core.taxonomy import FINE_CLASSES

    classes = list(FINE_CLASSES)
    notes = []
    if weights is None:
        weights = out / "source" / f"{name}-{size}px-random.safetensors"
        if not weights.is_file():
            torch.manual_seed(0)
            save_weights(create_classifier(name, len(classes), size), weights)
        notes.append(f"{name} has random weights (saved to {weights}): speed is that of the architecture; "
                     "agreement compares precisions of the same weights")
    spec = PreprocessSpec(size=size)
    evalset = _eval_images(images, None, out, spec, classes, eval_count)
    calib = images if images is not None else out / "sky" / "hr"
    digest = sha256(weights)
    bundles = {(p, v): _exported(out, p, v, digest, lambda p=p: (name, dict(
        precision=p, weights=weights, input_size=size, calib=calib))) for p in precisions for v in variants}

    def build() -> Any:
        model = create_classifier(name, len(classes), size)
        load_weights(model, weights)
        return model.eval()
    return BenchSource(f"{name} at {size} px", name, spec, classes, bundles, evalset,
                       _survey(images, out, survey_count), build, "", notes)


def _exported(out: Path, precision: str, variant: str, digest: str, how: Callable[[], tuple[str, dict]]) -> Path:
    """``OUT/bundles/<precision>-<variant>``, exported unless it already holds these weights."""
    bundle = out / "bundles" / f"{precision}-{variant}"
    if (bundle / Manifest.FILE).is_file():
        try:
            manifest = Manifest.load(bundle)
            if manifest.source.get("sha256") == digest and manifest.precision == precision and \
                    bool(manifest.preprocessing.get("fused")) == (variant == "fused"):
                log(f"reusing {bundle} (same weights)")
                return bundle
        except FlareError:
            pass
    from flare.export.classifier import export_classifier

    source, options = how()
    log(f"exporting {source} to {bundle}")
    # The gate still runs and its verdict is in the manifest and the report; the bench goes on
    # when it fails, because near-tied logits of random weights flip top-1 under fp16 noise.
    _, report = export_classifier(source, bundle, fuse_preprocess=variant == "fused", allow_parity_failure=True,
                                  **options)
    log(report.summary())
    return bundle


def _eval_images(images: Path | None, run: Path | None, out: Path, spec: PreprocessSpec, classes: list[str],
                 count: int) -> EvalSet:
    """Up to ``count`` evaluation images, resized; labels where the source says them."""
    paths: list[Path]
    labels: list[int] | None
    if run is not None and images is None:
        from flare.training.data.folders import resolve_root
        from flare.training.data.splits import read_split

        config = ClassifierRun.load(run)
        root = resolve_root(Path(config.train.data))
        rows = [r for r in read_split(run / "split.csv") if r["split"] == "test"]
        index = {c: i for i, c in enumerate(classes)}
        rows = [r for r in rows if r["label"] in index]
        paths, labels = [root / r["path"] for r in rows], [index[r["label"]] for r in rows]
        where = f"the test split of {run} ({len(rows)} labelled images)"
    else:
        folder = images if images is not None else _synthetic_sky(out, count)
        rel = list_images(folder)[0]
        paths = [folder / r for r in rel]
        labels = _folder_labels(rel, classes) if images is not None else None
        where = (f"{folder} ({'labelled by sub-folder' if labels else 'no labels'})" if images is not None
                 else f"a synthetic sky in {folder} (labels not used: the weights are not trained on it)")
    if not paths:
        raise UsageError(f"no images to evaluate on in {images or run}")
    if len(paths) > count:
        keep = np.linspace(0, len(paths) - 1, count).astype(int)
        paths = [paths[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    arrays = np.stack([resize(load_rgb(p, stretch=spec.stretch), spec) for p in paths])
    return EvalSet(arrays, np.asarray(labels) if labels is not None else None, where)


def _folder_labels(rel: list[str], classes: list[str]) -> list[int] | None:
    """Class indices from ``<class>/...`` paths, when every first folder names a class."""
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for r in rel:
        top = r.split("/", 1)[0] if "/" in r else ""
        label = top if top in index else fine_from_folder(top)
        if label not in index:
            return None
        labels.append(index[label])
    return labels


def _synthetic_sky(out: Path, count: int) -> Path:
    """``OUT/sky/hr``: procedural sky images, 256 px, enough for ``count`` (made once)."""
    from flare.training.data.synth import SynthConfig, synthesize

    per_class = max(math.ceil(count / 8), 4)
    log(f"synthesizing {per_class * 8} sky images into {out / 'sky'}")
    synthesize(out / "sky", SynthConfig(per_class=per_class, size=256, seed=7))
    return out / "sky" / "hr"


def _survey(images: Path | None, out: Path, count: int) -> Path:
    """``OUT/survey``: links to ``count`` images, the folder the end-to-end triage reads.

    With fewer images than ``count`` the links cycle through them (``pass1/...``): triage
    throughput is a steady-state figure, and a pipeline of a few batches is mostly the cost
    of filling it (the first batch is decoded before the model can start).
    """
    source = images if images is not None else out / "sky" / "hr"
    if not source.is_dir():
        _synthetic_sky(out, count)
    rel = list_images(source)[0]
    if not rel:
        raise UsageError(f"{source} holds no images for the end-to-end triage")
    keep = [rel[i] for i in np.linspace(0, len(rel) - 1, min(count, len(rel))).astype(int)]
    survey = out / "survey"
    shutil.rmtree(survey, ignore_errors=True)
    for i in range(count):
        r = keep[i % len(keep)]
        dst = survey / (f"pass{i // len(keep)}" if count > len(keep) else "") / r
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            dst.symlink_to((source / r).resolve())
        except OSError:
            shutil.copyfile(source / r, dst)
    return survey
