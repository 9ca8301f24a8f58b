"""Click commands of the torch-free runtime: info, classify, triage, enhance, generate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flare.runtime.apps.report import PAGE_MARK
from flare.runtime.core.backends.options import BACKENDS, RunnerOptions
from flare.runtime.foundation.options import (COUNT, FRACTION, NON_NEGATIVE, SEED_RANGE, FiniteRange, FlareCommand, InputPath,
                                              OutputPath, ResultsPath)

if TYPE_CHECKING:
    from flare.runtime.tasks.classify import Classifier

BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
    help="auto tries TensorRT, then CUDA, then CPU (ONNX Runtime), and says which one runs; trt-engine runs the "
         "bundle's TensorRT engine, openvino the ONNX file on OpenVINO (the 'openvino' extra).")
CUDA_GRAPH_OPTION = click.option(
    "--cuda-graph", is_flag=True,
    help="With --backend cuda: capture each input shape as a CUDA graph and replay it (fixed --batch and tile "
         "sizes; a model or shape the provider cannot capture runs without, with a note).")
#: What each model replica of ``--engine ray`` reserves (triage and catalog alike).
GPUS_PER_WORKER_OPTION = click.option(
    "--gpus-per-worker", type=FiniteRange(min=0), default=0.0, show_default=True,
    help="ray: GPUs each model replica reserves (fractions share a GPU).")
CPUS_PER_WORKER_OPTION = click.option(
    "--cpus-per-worker", type=FiniteRange(min=0, min_open=True), default=1.0, show_default=True,
    help="ray: CPUs each model replica reserves (and its inference threads).")


def refuse_ray_only(address: str | None, gpus_per_worker: float, cpus_per_worker: float) -> None:
    """The Ray engine's options given to the local engine: a usage error rather than ignored."""
    from flare.runtime.foundation.errors import UsageError

    ray_only = [name for name, value in (("--address", address), ("--gpus-per-worker", gpus_per_worker),
                                         ("--cpus-per-worker", cpus_per_worker != 1.0)) if value]
    if ray_only:
        raise UsageError(f"{', '.join(ray_only)} only apply with --engine ray")


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@BACKEND_OPTION
def info(bundle: Path, as_json: bool, backend: str) -> None:
    """Describe a bundle and the backend that would run it here."""
    from flare.runtime.core.manifest import Manifest
    from flare.runtime.core.backends.ort_runner import installed_onnxruntime_packages
    from flare.runtime.core.tasks import task_named

    manifest = Manifest.load(bundle)
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    lines = [f"bundle      {bundle}", f"task        {manifest.task} ({manifest.precision})",
             f"files       {', '.join(f'{k}={v.path} ({v.bytes:,} bytes, sha256 checked)' for k, v in manifest.files.items())}"]
    for t in manifest.inputs:
        lines.append(f"input       {t.name} {t.shape} {t.dtype}")
    for t in manifest.outputs:
        lines.append(f"output      {t.name} {t.shape} {t.dtype}")
    if manifest.labels:
        lines.append(f"classes     {manifest.labels.level}: {', '.join(manifest.labels.classes)}")
    task = task_named(manifest.task)
    lines.extend(task.model_class().describe(manifest))
    for name, parity in (manifest.parity.get("parts") or {"model": manifest.parity}).items():
        if parity:
            lines.append(f"parity      {'' if name == 'model' else name + ' '}{_parity_text(parity)}")
    ops = manifest.extra.get("tensorrt_ops")
    if ops:
        refused = sum(len(m["unsupported"]) for m in ops["models"].values())
        lines.append(f"tensorrt    ONNX parser op check {'PASS' if ops['passed'] else f'FAIL ({refused} nodes)'} against "
                     f"{ops['checked_against']}")
    for engine in manifest.engines:
        lines.append(f"engine      {engine.model}: {manifest.files[engine.file].path} for TensorRT {engine.tensorrt} on "
                     f"compute capability {engine.compute_capability} ({engine.gpu}), {engine.precision}, "
                     f"batches up to {engine.max_batch}")
    src = manifest.source
    lines.append(f"source      {src.get('model')} {src.get('checkpoint') or '(random weights)'}")
    lines.append(f"made with   {', '.join(f'{k} {v}' for k, v in manifest.versions.items())}")
    packages = installed_onnxruntime_packages()
    lines.append(f"onnxruntime {', '.join(packages) or 'not installed'}"
                 + ("  WARNING: more than one ONNX Runtime package; uninstall all and install one" if len(packages) > 1 else ""))
    with task.model_class()(bundle, RunnerOptions(backend)) as model:  # opened as the commands open it
        runner = model.runner
        lines.append(f"runs on     {runner.name}"
                     + (f" (batches up to {runner.max_batch})" if runner.max_batch else ""))
        lines.extend(f"dropped     {note}" for note in runner.notes)
    click.echo("\n".join(lines))


def _parity_text(parity: dict) -> str:
    """One part's parity figures as a person reads them."""
    verdict = "PASS" if parity.get("passed") else "FAIL"
    if parity.get("psnr_db") is not None:
        figures = f"PSNR {parity['psnr_db']:.1f} dB, max abs {parity.get('max_abs_diff'):.2e}"
    elif parity.get("max_abs_diff") is not None:
        top1 = parity.get("top1_agreement")
        figures = f"max abs {parity['max_abs_diff']:.2e}" + ("" if top1 is None else f", top-1 agreement {top1}")
    else:
        figures = "no figures"
    return f"{verdict}: {figures} on {parity.get('samples')} {parity.get('inputs')}"


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "top_k", type=COUNT, default=3, show_default=True, help="How many classes to show per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@BACKEND_OPTION
@CUDA_GRAPH_OPTION
def classify(bundle: Path, images: tuple[Path, ...], top_k: int, as_json: bool, backend: str, cuda_graph: bool) -> None:
    """Classify image files (PNG, JPEG, TIFF, FITS) with a bundle."""
    from flare.runtime.tasks.classify import Classifier

    with Classifier(bundle, RunnerOptions(backend, cuda_graph=cuda_graph)) as clf:
        _classify_each(clf, images, top_k, as_json)


def _classify_each(clf: Classifier, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Print one result per image; unreadable images are reported and counted, not fatal."""
    from flare.runtime.foundation.errors import FlareError, ImageDecodeError
    from flare.runtime.foundation.progress import log

    log(f"running on {clf.backend}")
    for note in clf.notes:
        log(f"backend: {note}")
    failed = 0
    for path in images:
        try:
            pred = clf.classify_files([path], top_k=top_k)[0]
        except ImageDecodeError as exc:
            failed += 1
            log(f"Error: {exc}")
            continue
        if as_json:
            click.echo(json.dumps(pred.to_dict()))
        else:
            tops = ", ".join(f"{c} {p:.3f}" for c, p in pred.top)
            click.echo(f"{path}: {tops} | {pred.macro} {pred.macro_probability:.3f}")
    if failed:
        raise FlareError(f"{failed} of {len(images)} images could not be read (see above)")


@click.command(cls=FlareCommand)
@click.argument("directory", metavar="DIR", type=InputPath("dir"))
@click.option("--model", "bundle", required=True, type=InputPath("dir"), help="Classify bundle.")
@click.option("--out", type=ResultsPath(), required=True,
              help="Results: a .csv file, or a .parquet (or suffix-less) folder of Parquet parts; re-running resumes.")
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True,
              help="Flag rows whose confidence is below this.")
@click.option("--batch", type=COUNT, default=32, show_default=True, help="Images per inference call.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine; ray: a Ray cluster (the 'ray' extra), same rows.")
@click.option("--workers", type=COUNT, default=None,
              help="local: decoding threads (default: CPU count, up to 8); ray: model replicas, one actor each "
                   "(default 1).")
@click.option("--address", default=None,
              help="ray: the cluster to join, e.g. 10.0.0.5:6379 (default: $RAY_ADDRESS, else a new local instance).")
@GPUS_PER_WORKER_OPTION
@CPUS_PER_WORKER_OPTION
@click.option("--max-pixels", type=COUNT, default=None,
              help="Refuse images larger than this many pixels (default: Pillow's decompression-bomb limit).")
@BACKEND_OPTION
@CUDA_GRAPH_OPTION
def triage(directory: Path, bundle: Path, out: Path, threshold: float, batch: int, engine: str, workers: int | None,
           address: str | None, gpus_per_worker: float, cpus_per_worker: float, max_pixels: int | None, backend: str,
           cuda_graph: bool) -> None:
    """Classify every image under DIR into resumable results, flagging low confidence."""
    from flare.runtime.io.images import DEFAULT_MAX_PIXELS
    from flare.runtime.foundation.progress import log, progress_bar
    from flare.runtime.apps.results import results_format

    results_format(out)  # an unknown suffix is a usage error before any model is loaded
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if engine == "ray":
        from flare.runtime.apps.triage_ray import BundlePredictors, RayOptions, triage_on_ray

        options = RayOptions(address=address, workers=workers or 1, gpus_per_worker=gpus_per_worker,
                             cpus_per_worker=cpus_per_worker)
        log(f"running on Ray: {options.workers} model replica(s) on {backend}, decoding on the cluster's other CPUs")
        with progress_bar(None, "triage") as bar:
            predictors = BundlePredictors(str(bundle.resolve()), RunnerOptions(backend, spin=False, cuda_graph=cuda_graph))
            summary = triage_on_ray(directory, predictors, out, options=options,
                                    threshold=threshold, batch_size=batch, max_pixels=limit, progress=bar,
                                    on_start=bar.start)
        click.echo(summary.format())
        return
    from flare.runtime.tasks.classify import Classifier
    from flare.runtime.apps.triage import triage as run_triage

    refuse_ray_only(address, gpus_per_worker, cpus_per_worker)
    with Classifier(bundle, RunnerOptions(backend, spin=False, cuda_graph=cuda_graph)) as clf, progress_bar(None, "triage") as bar:
        log(f"running on {clf.backend}")
        summary = run_triage(directory, clf, out, threshold=threshold, batch_size=batch, workers=workers,
                             max_pixels=limit, progress=bar, on_start=bar.start)
    click.echo(summary.format())


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.argument("images", metavar="IMAGE_OR_DIR...", nargs=-1, required=True, type=InputPath("any"))
@click.option("--out", type=OutputPath("dir", made_by="enhance.csv"), required=True,
              help="Folder for the enhanced images (re-running skips finished ones).")
@click.option("--tile", type=NON_NEGATIVE, default=None,
              help="Tile side in input pixels (default: the bundle's recommendation; 0: whole images).")
@click.option("--overlap", type=NON_NEGATIVE, default=None,
              help="Input pixels shared by neighbouring tiles (default: the bundle's recommendation).")
@click.option("--batch", type=COUNT, default=4, show_default=True, help="Tiles per inference call.")
@click.option("--png", "display", is_flag=True, help="For FITS inputs, also write a stretched 8-bit PNG to look at.")
@BACKEND_OPTION
@CUDA_GRAPH_OPTION
def enhance(bundle: Path, images: tuple[Path, ...], out: Path, tile: int | None, overlap: int | None, batch: int,
            display: bool, backend: str, cuda_graph: bool) -> None:
    """Super-resolve images (PNG, TIFF, JPEG, FITS) of any size with an enhance bundle, tile by tile."""
    from flare.runtime.tasks.enhance import Enhancer
    from flare.runtime.apps.enhance_files import enhance_files, raise_if_failed
    from flare.runtime.foundation.progress import log, progress_bar

    with Enhancer(bundle, RunnerOptions(backend, cuda_graph=cuda_graph), tile=tile, overlap=overlap, batch=batch) as enhancer, \
            progress_bar(None, "enhance (input pixels)") as bar:
        log(f"running on {enhancer.backend}: x{enhancer.scale}, tiles of {enhancer.tile or 'whole-image'} px "
            f"overlapping by {enhancer.overlap}, {enhancer.batch} per call")
        summary = enhance_files(enhancer, list(images), out, display=display, bar=bar)
    click.echo(summary.format())
    raise_if_failed(summary)


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.option("--class", "class_name", default=None, help="Class to generate (the prompt 'An image of {class} in space').")
@click.option("--prompt", default=None, help="Free-text prompt instead of a class (needs a bundle with a text encoder).")
@click.option("-n", "count", type=COUNT, default=1, show_default=True, help="Images to generate; image j has seed SEED+j.")
@click.option("--out", type=OutputPath("dir"), required=True,
              help="Folder for the PNGs (re-running skips images already made with the same settings).")
@click.option("--steps", type=COUNT, default=None, help="Sampler steps (default: the bundle's, 50).")
@click.option("--guidance", type=FiniteRange(min=0.0), default=None,
              help="Classifier-free guidance scale; 1 turns guidance off (default: the bundle's, 8).")
@click.option("--seed", type=SEED_RANGE, default=0, show_default=True,
              help="Seed of the first image (each file name carries its image's seed).")
@click.option("--sampler", type=click.Choice(["ddim", "dpmpp"]), default=None,
              help="DDIM or DPM-Solver++ multistep (default: the bundle's, dpmpp).")
@click.option("--order", type=click.IntRange(1, 3), default=None, help="DPM-Solver++ order (default: the bundle's, 3).")
@click.option("--source", type=InputPath("file"), default=None,
              help="Source image for image variation (the model keeps its layout and colours).")
@click.option("--strength", type=FiniteRange(0.0, 1.0, min_open=True), default=None,
              help="With --source on a text-to-image pipeline: how far the source is re-noised (default 0.75).")
@click.option("--batch", type=COUNT, default=4, show_default=True, help="Images sampled together.")
@BACKEND_OPTION
@CUDA_GRAPH_OPTION
def generate(bundle: Path, class_name: str | None, prompt: str | None, count: int, out: Path, steps: int | None,
             guidance: float | None, seed: int, sampler: str | None, order: int | None, source: Path | None,
             strength: float | None, batch: int, backend: str, cuda_graph: bool) -> None:
    """Generate images of a class (or a prompt) with a generate bundle, without torch."""
    from flare.runtime.foundation.errors import UsageError
    from flare.runtime.tasks.generate import Generator
    from flare.runtime.apps.generate_files import Request, generate_files
    from flare.runtime.io.images import load_rgb
    from flare.runtime.foundation.progress import log, progress_bar

    if (class_name is None) == (prompt is None):
        raise UsageError("give either --class NAME or --prompt TEXT")
    with Generator(bundle, RunnerOptions(backend, cuda_graph=cuda_graph), batch=batch) as generator:
        defaults = generator.spec.defaults
        request = Request(name=class_name, prompt=prompt, n=count, seed=seed,
                          steps=steps or int(defaults.get("steps", 50)),
                          guidance=float(defaults.get("guidance", 8.0)) if guidance is None else guidance,
                          sampler=sampler or str(defaults.get("sampler", "dpmpp")),
                          order=order or int(defaults.get("order", 3)),
                          strength=float(defaults.get("strength", 0.75)) if strength is None else strength,
                          source=source)
        # an unknown class, or a prompt for a bundle without a text encoder, fails before any work
        generator.contexts(names=[class_name]) if prompt is None else generator.contexts(prompts=[prompt])
        picture = None
        if source is not None:
            if not generator.supports_image_variation:
                raise UsageError(f"{bundle} cannot take --source: its model has no source-image condition "
                                 "(or the bundle has no VAE encoder)")
            picture = load_rgb(source)
        with progress_bar(None, "sampling (image steps)") as bar:
            log(f"running on {generator.backend}: {request.steps} {request.sampler} steps, guidance "
                f"{request.guidance}, {batch} images per batch")
            summary = generate_files(generator, request, out, source=picture, bar=bar)
    click.echo(summary.format())
    click.echo(f"images in {out}")


@click.command(cls=FlareCommand)
@click.argument("results", type=InputPath("any"))
@click.option("--out", type=OutputPath("file", made_by=PAGE_MARK), required=True,
              help="The HTML page to write: one self-contained file (charts and thumbnails inlined); an existing "
                   "file is replaced only if it is a page this command wrote.")
@click.option("--images", type=InputPath("dir"), default=None,
              help="Folder of the triaged images (default: the one the results record).")
@click.option("--thumbnails", type=COUNT, default=200, show_default=True,
              help="Flagged images shown as thumbnails, least confident first.")
def report(results: Path, out: Path, images: Path | None, thumbnails: int) -> None:
    """Write an HTML report of triage RESULTS (a .csv file or a Parquet folder)."""
    from flare.runtime.apps.report import write_report

    summary = write_report(results, out, images=images, thumbnails=thumbnails)
    click.echo(summary.format())
    click.echo(f"report in {out}")
