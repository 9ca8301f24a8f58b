"""Click commands for ``flare export``. Heavy imports stay inside the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flare.runtime.foundation.options import (COUNT, NON_NEGATIVE, PIXELS, CommandGroup, CommaList, InputPath, OutputPath, RunOrName,
                           input_size)


@click.group(cls=CommandGroup)
def export() -> None:
    """Export models to checked ONNX / TensorRT bundles (needs the 'export' extra)."""


def engine_options(tiles: bool = False, flag: bool = True) -> Callable[[Callable], Callable]:
    """The TensorRT options every export shares (and ``export engine``, which has no --engine flag)."""
    def decorate(command: Callable) -> Callable:
        options = [
            click.option("--max-batch", type=COUNT, default=None,
                         help="Largest batch (images per call) the engines accept (default: 32 classify, 8 tiles "
                              "enhance, 4 images generate; guided UNet calls get twice this)."),
            click.option("--timing-cache", type=OutputPath("file"), default=None,
                         help="TensorRT timing cache to reuse and update (default: timing.cache in the bundle)."),
        ]
        if tiles:
            options.insert(1, click.option("--max-tile", type=PIXELS, default=None,
                                           help="Largest tile side the engine accepts (default 512, at least --tile)."))
        if flag:
            options.insert(0, click.option("--engine", is_flag=True,
                                           help="Also build TensorRT engines on this GPU (TensorRT 10 or 11)."))
            options.append(click.option("--allow-unsupported-ops", is_flag=True,
                                        help="Write the bundle even if TensorRT's ONNX parser would refuse a node "
                                             "(it then runs on ONNX Runtime and OpenVINO only)."))
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def tensorrt_options(engine: bool, max_batch: int | None, timing_cache: Path | None,
                     allow_unsupported_ops: bool, max_tile: int | None = None) -> Any:
    """The :class:`flare.export.tensorrt.TensorRTOptions` the shared options ask for."""
    from flare.export.tensorrt import TensorRTOptions
    from flare.runtime.core.engines import ProfileOptions

    return TensorRTOptions(engine=engine, profile=ProfileOptions(max_batch=max_batch, max_tile=max_tile),
                           timing_cache=timing_cache, allow_unsupported_ops=allow_unsupported_ops)


def run_export(task: str, exporter: Callable[..., tuple[Path, Any]], source: str | Path, out: Path,
               **options: Any) -> None:
    """Check that ``source`` is ``task``'s (one resolver for every export), export it, and say
    what the parity gate found and where the bundle went."""
    from flare.runtime.core.sources import require_task
    from flare.runtime.foundation.progress import log

    require_task(str(source), task)
    path, report = exporter(source, out, **options)
    log(report.summary())
    log(f"bundle written to {path}")


@export.command()
@click.argument("run_or_name", metavar="RUN_OR_NAME", type=RunOrName())
@click.option("--out", type=OutputPath("dir", made_by="manifest.json"), required=True, help="Bundle folder to write.")
@click.option("--num-classes", type=click.IntRange(min=2), default=None, help="Classes for a bare model name (default 8).")
@click.option("--weights", type=InputPath("file"), default=None, help="Local weights for a bare model name.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--calib", type=InputPath("dir"), default=None,
              help="Folder of images for the parity check and int8 calibration.")
@click.option("--samples", type=COUNT, default=32, show_default=True, help="Images compared in the parity check.")
@input_size(None)
@engine_options()
@click.option("--fuse-preprocess", is_flag=True,
              help="The model takes resized uint8 NHWC images and normalises them itself (a quarter of the "
                   "bytes to a GPU, no float work on the host).")
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if ONNX disagrees with PyTorch (marked failed in the manifest).")
def classifier(run_or_name: str, out: Path, num_classes: int | None, weights: Path | None, precision: str,
               calib: Path | None, samples: int, input_size: int | None, engine: bool, max_batch: int | None,
               timing_cache: Path | None, allow_unsupported_ops: bool, fuse_preprocess: bool,
               allow_parity_failure: bool) -> None:
    """Export a training RUN, or a timm/googlenet architecture, as a classify bundle."""
    from flare.export.classifier import export_classifier

    run_export("classify", export_classifier, run_or_name, out, num_classes=num_classes, weights=weights,
               precision=precision, calib=calib, samples=samples, input_size=input_size,
               allow_parity_failure=allow_parity_failure,
               tensorrt=tensorrt_options(engine, max_batch, timing_cache, allow_unsupported_ops),
               fuse_preprocess=fuse_preprocess)


@export.command()
@click.argument("checkpoint", metavar="CHECKPOINT", type=InputPath("any"))
@click.option("--out", type=OutputPath("dir", made_by="manifest.json"), required=True, help="Bundle folder to write.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="fp16 keeps fp32 inputs and outputs, LayerNorm and softmax.")
@click.option("--calib", type=InputPath("dir"), default=None,
              help="Folder of images for the parity check (default: the RUN's data).")
@click.option("--tile", type=PIXELS, default=None,
              help="Tile side to recommend in the manifest (default: picked from the architecture).")
@click.option("--overlap", type=NON_NEGATIVE, default=None, help="Tile overlap to recommend (input pixels).")
@engine_options(tiles=True)
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if ONNX disagrees with PyTorch (marked failed in the manifest).")
def sr(checkpoint: Path, out: Path, precision: str, calib: Path | None, tile: int | None, overlap: int | None,
       engine: bool, max_batch: int | None, max_tile: int | None, timing_cache: Path | None,
       allow_unsupported_ops: bool, allow_parity_failure: bool) -> None:
    """Export an official SwinIR .pth or a 'flare train-sr' RUN as an enhance bundle."""
    from flare.export.sr import export_sr

    run_export("enhance", export_sr, checkpoint, out, precision=precision, calib=calib, tile=tile, overlap=overlap,
               allow_parity_failure=allow_parity_failure,
               tensorrt=tensorrt_options(engine, max_batch, timing_cache, allow_unsupported_ops, max_tile))


@export.command()
@click.argument("source", metavar="RUN_OR_PIPELINE", type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="manifest.json"), required=True, help="Bundle folder to write.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="fp16 puts the UNet in half precision (fp32 inputs and outputs); the VAE decoder only when it "
                   "passes on real latents.")
@click.option("--calib", type=InputPath("dir"), default=None,
              help="Folder of images whose latents the parity check uses (default: the RUN's data).")
@click.option("--classes", type=CommaList(click.STRING), default=None,
              help="For a pipeline: class names whose prompts are encoded into the bundle (comma-separated).")
@engine_options()
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if a part disagrees with PyTorch (marked failed in the manifest).")
def diffusion(source: Path, out: Path, precision: str, calib: Path | None, classes: list[str] | None, engine: bool,
              max_batch: int | None, timing_cache: Path | None, allow_unsupported_ops: bool,
              allow_parity_failure: bool) -> None:
    """Export a 'flare train-diffusion' RUN or a local Stable-Diffusion pipeline folder as a generate bundle."""
    from flare.export.diffusion import export_diffusion

    run_export("generate", export_diffusion, source, out, precision=precision, calib=calib, classes=classes,
               tensorrt=tensorrt_options(engine, max_batch, timing_cache, allow_unsupported_ops),
               allow_parity_failure=allow_parity_failure)


@export.command()
@click.argument("bundle", metavar="BUNDLE", type=InputPath("dir"))
@engine_options(tiles=True, flag=False)
def engine(bundle: Path, max_batch: int | None, timing_cache: Path | None, max_tile: int | None = None) -> None:
    """Build TensorRT engines for this GPU into an existing bundle (any task), e.g. on the Jetson it runs on.

    Engines for other GPUs or TensorRT versions already in the bundle are kept; the runtime
    picks the one built for the machine it runs on. Needs TensorRT and cuda-python, not torch.
    """
    from flare.export.tensorrt import add_engines
    from flare.runtime.core.manifest import Manifest
    from flare.runtime.core.engines import ProfileOptions
    from flare.runtime.foundation.progress import log

    manifest = Manifest.load(bundle)
    add_engines(bundle, manifest, ProfileOptions(max_batch=max_batch, max_tile=max_tile), timing_cache)
    log(f"engines written into {bundle}: " + ", ".join(e.file for e in manifest.engines))


@export.command()
@click.argument("bundles", metavar="BUNDLE...", nargs=-1, required=True, type=InputPath("dir"))
@click.option("--out", type=OutputPath("dir", made_by="flare-triton.json"), required=True,
              help="Model repository folder to write (replaced as a whole when it is one this command wrote).")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True,
              help="Where the ONNX models' instances run; gpu adds the TensorRT accelerator.")
@click.option("--instances", type=COUNT, default=1, show_default=True, help="Instances of each model.")
@click.option("--max-batch", type=COUNT, default=None,
              help="Largest batch per call (default: 32 classify, 8 tiles enhance, 4 images generate; guided UNet "
                   "calls get twice this).")
def triton(bundles: tuple[Path, ...], out: Path, kind: str, instances: int, max_batch: int | None) -> None:
    """Write a Triton Inference Server model repository serving the bundles (any task; no torch needed).

    Clients send encoded image bytes (IMAGE) to classify and enhance models, and CLASS or PROMPT
    (with SEED, COUNT, STEPS, GUIDANCE, SAMPLER) to generate models. The Python-backend models
    need 'flare-edge[cpu]' installed in the server's Python environment.
    """
    from flare.export.triton import ServingOptions, export_triton
    from flare.runtime.foundation.progress import log

    path = export_triton(list(bundles), out, ServingOptions(kind=kind, instances=instances, max_batch=max_batch))
    log(f"model repository written to {path}; serve it with: docker run --gpus all --rm -p 8000:8000 -p 8001:8001 "
        f"-v {Path(path).resolve()}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models")
