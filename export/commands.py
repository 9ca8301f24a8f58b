"""Click commands for ``flare export``. Heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path

import click

from flare.options import (COUNT, NON_NEGATIVE, PIXELS, CommandGroup, CommaList, InputPath, OutputPath, RunOrName,
                           input_size)


@click.group(cls=CommandGroup)
def export() -> None:
    """Export models to checked ONNX / TensorRT bundles (needs the 'export' extra)."""


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
@click.option("--engine", is_flag=True, help="Also build a TensorRT engine (needs TensorRT on this GPU).")
@click.option("--fuse-preprocess", is_flag=True,
              help="The model takes resized uint8 NHWC images and normalises them itself (a quarter of the "
                   "bytes to a GPU, no float work on the host).")
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if ONNX disagrees with PyTorch (marked failed in the manifest).")
def classifier(run_or_name: str, out: Path, num_classes: int | None, weights: Path | None, precision: str,
               calib: Path | None, samples: int, input_size: int | None, engine: bool, fuse_preprocess: bool,
               allow_parity_failure: bool) -> None:
    """Export a training RUN, or a timm/googlenet architecture, as a classify bundle."""
    from flare.export.classifier import export_classifier
    from flare.runtime.progress import log

    path, report = export_classifier(run_or_name, out, num_classes=num_classes, weights=weights,
                                     precision=precision, calib=calib, samples=samples, input_size=input_size,
                                     allow_parity_failure=allow_parity_failure, engine=engine,
                                     fuse_preprocess=fuse_preprocess)
    log(report.summary())
    log(f"bundle written to {path}")


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
@click.option("--engine", is_flag=True, help="Also build a TensorRT engine (needs TensorRT on this GPU).")
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if ONNX disagrees with PyTorch (marked failed in the manifest).")
def sr(checkpoint: Path, out: Path, precision: str, calib: Path | None, tile: int | None, overlap: int | None,
       engine: bool, allow_parity_failure: bool) -> None:
    """Export an official SwinIR .pth or a 'flare train-sr' RUN as an enhance bundle."""
    from flare.export.sr import export_sr
    from flare.runtime.progress import log

    path, report = export_sr(checkpoint, out, precision=precision, calib=calib, tile=tile, overlap=overlap,
                             engine=engine, allow_parity_failure=allow_parity_failure)
    log(report.summary())
    log(f"bundle written to {path}")


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
@click.option("--engine", is_flag=True, help="Also build TensorRT engines for the UNet and VAE decoder.")
@click.option("--allow-parity-failure", is_flag=True,
              help="Write the bundle even if a part disagrees with PyTorch (marked failed in the manifest).")
def diffusion(source: Path, out: Path, precision: str, calib: Path | None, classes: list[str] | None, engine: bool,
              allow_parity_failure: bool) -> None:
    """Export a 'flare train-diffusion' RUN or a local Stable-Diffusion pipeline folder as a generate bundle."""
    from flare.export.diffusion import export_diffusion
    from flare.runtime.progress import log

    path, report = export_diffusion(source, out, precision=precision, calib=calib, classes=classes, engine=engine,
                                    allow_parity_failure=allow_parity_failure)
    log(report.summary())
    log(f"bundle written to {path}")
