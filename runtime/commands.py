"""Click commands of the torch-free runtime: info, classify, triage, enhance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flare.options import COUNT, FRACTION, NON_NEGATIVE, FlareCommand, InputPath, OutputPath
from flare.runtime.backends.base import BACKENDS

if TYPE_CHECKING:
    from flare.runtime.classify import Classifier

BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
    help="auto tries TensorRT, then CUDA, then CPU (ONNX Runtime), and says which one runs; trt-engine runs the "
         "bundle's TensorRT engine, openvino the ONNX file on OpenVINO (the 'openvino' extra).")


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@BACKEND_OPTION
def info(bundle: Path, as_json: bool, backend: str) -> None:
    """Describe a bundle and the backend that would run it here."""
    from flare.runtime.artifacts import Manifest
    from flare.runtime.backends import open_runner
    from flare.runtime.backends.ort_runner import installed_onnxruntime_packages

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
    pre = manifest.preprocessing
    if manifest.task == "enhance":
        lines.append(f"enhance     x{pre.get('scale')} {pre.get('color')}, window {pre.get('window')}, recommended tiles "
                     f"{pre.get('tile')} px overlapping by {pre.get('overlap')}")
    elif pre:
        lines.append(f"preprocess  {pre.get('size')} px {pre.get('interpolation')}, mean {pre.get('mean')}, "
                     f"std {pre.get('std')}, FITS {pre.get('stretch', {}).get('kind')} stretch")
    parity = manifest.parity
    if parity and parity.get("psnr_db") is not None:
        lines.append(f"parity      {'PASS' if parity.get('passed') else 'FAIL'}: PSNR {parity['psnr_db']:.1f} dB, max abs "
                     f"{parity.get('max_abs_diff'):.2e} on {parity.get('samples')} {parity.get('inputs')}")
    elif parity:
        lines.append(f"parity      {'PASS' if parity.get('passed') else 'FAIL'}: max abs {parity.get('max_abs_diff'):.2e}, "
                     f"top-1 agreement {parity.get('top1_agreement')} on {parity.get('samples')} {parity.get('inputs')}")
    src = manifest.source
    lines.append(f"source      {src.get('model')} {src.get('checkpoint') or '(random weights)'}")
    lines.append(f"made with   {', '.join(f'{k} {v}' for k, v in manifest.versions.items())}")
    packages = installed_onnxruntime_packages()
    lines.append(f"onnxruntime {', '.join(packages) or 'not installed'}"
                 + ("  WARNING: more than one ONNX Runtime package; uninstall all and install one" if len(packages) > 1 else ""))
    model_key = "model" if "model" in manifest.files else next(iter(manifest.files))
    with open_runner(bundle, manifest, backend, model_key) as runner:
        lines.append(f"runs on     {runner.name}"
                     + (f" (batches up to {runner.max_batch})" if runner.max_batch else ""))
        lines.extend(f"dropped     {note}" for note in runner.notes)
    click.echo("\n".join(lines))


@click.command(cls=FlareCommand)
@click.argument("bundle", type=InputPath("dir"))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "top_k", type=COUNT, default=3, show_default=True, help="How many classes to show per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@BACKEND_OPTION
def classify(bundle: Path, images: tuple[Path, ...], top_k: int, as_json: bool, backend: str) -> None:
    """Classify image files (PNG, JPEG, TIFF, FITS) with a bundle."""
    from flare.runtime.classify import Classifier

    with Classifier(bundle, backend=backend) as clf:
        _classify_each(clf, images, top_k, as_json)


def _classify_each(clf: Classifier, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Print one result per image; unreadable images are reported and counted, not fatal."""
    from flare.runtime.errors import FlareError, ImageDecodeError
    from flare.runtime.progress import log

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
@click.option("--out", type=OutputPath("file"), required=True, help="Results CSV (appended; re-run resumes).")
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True,
              help="Flag rows whose confidence is below this.")
@click.option("--batch", type=COUNT, default=32, show_default=True)
@click.option("--workers", type=COUNT, default=None, help="Decoding threads (default: CPU count).")
@click.option("--max-pixels", type=COUNT, default=None,
              help="Refuse images larger than this many pixels (default: Pillow's decompression-bomb limit).")
@BACKEND_OPTION
def triage(directory: Path, bundle: Path, out: Path, threshold: float, batch: int, workers: int | None,
           max_pixels: int | None, backend: str) -> None:
    """Classify every image under DIR into a resumable CSV, flagging low confidence."""
    from flare.runtime.classify import Classifier
    from flare.runtime.imageio import DEFAULT_MAX_PIXELS
    from flare.runtime.progress import log, progress_bar
    from flare.runtime.triage import triage as run_triage

    with Classifier(bundle, backend=backend, spin=False) as clf, progress_bar(None, "triage") as bar:
        log(f"running on {clf.backend}")
        summary = run_triage(directory, clf, out, threshold=threshold, batch_size=batch, workers=workers,
                             max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, progress=bar, on_start=bar.start)
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
def enhance(bundle: Path, images: tuple[Path, ...], out: Path, tile: int | None, overlap: int | None, batch: int,
            display: bool, backend: str) -> None:
    """Super-resolve images (PNG, TIFF, JPEG, FITS) of any size with an enhance bundle, tile by tile."""
    from flare.runtime.enhance import Enhancer
    from flare.runtime.enhance_files import enhance_files, raise_if_failed
    from flare.runtime.progress import log, progress_bar

    with Enhancer(bundle, backend=backend, tile=tile, overlap=overlap, batch=batch) as enhancer, \
            progress_bar(None, "enhance (input pixels)") as bar:
        log(f"running on {enhancer.backend}: x{enhancer.scale}, tiles of {enhancer.tile or 'whole-image'} px "
            f"overlapping by {enhancer.overlap}, {enhancer.batch} per call")
        summary = enhance_files(enhancer, list(images), out, display=display, bar=bar)
    click.echo(summary.format())
    raise_if_failed(summary)
