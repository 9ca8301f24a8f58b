"""``flare catalog``'s command line (the work is in :mod:`flare.runtime.apps.catalog`)."""

from __future__ import annotations

from pathlib import Path

import click

from flare.runtime.apps.commands import (BACKEND_OPTION, CPUS_PER_WORKER_OPTION, CUDA_GRAPH_OPTION,
                                         GPUS_PER_WORKER_OPTION, refuse_ray_only)
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.foundation.options import COUNT, FRACTION, POSITIVE, FlareCommand, InputPath, OutputPath
from flare.runtime.foundation.paths import check_output

#: What a catalogue of each format carries, so ``--out`` never replaces what flare did not make.
_MADE_BY = {".csv": "frame,source_id,status,sources", ".fits": "flare catalog", ".fit": "flare catalog",
            ".ecsv": "flare catalog"}


class CatalogPath(OutputPath):
    """``--out``: a .csv, .fits or .ecsv file, or a .parquet (or suffix-less) folder; an
    existing one must be a catalogue this command wrote."""

    beside_inputs = True

    def __init__(self) -> None:
        super().__init__("any")

    def check(self, path: Path, what: str) -> Path:
        suffix = path.suffix.lower()
        if suffix in _MADE_BY:
            return check_output(path, "file", what, _MADE_BY[suffix])
        return check_output(path, "dir" if path.is_dir() or not suffix else "any", what, "_flare.json")


class CutoutSide(click.ParamType):
    """``--cutout``: ``auto`` or a side in pixels, checked when the command line is parsed."""

    name = "auto|N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        from flare.runtime.apps.catalog import parse_cutout

        if value is None or isinstance(value, int):
            return value
        try:
            return parse_cutout(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command(cls=FlareCommand)
@click.argument("frames", metavar="FRAMES_OR_DIR...", nargs=-1, required=True, type=InputPath("any"))
@click.option("--model", "bundle", required=True, type=InputPath("dir"), help="Classify bundle.")
@click.option("--out", type=CatalogPath(), required=True,
              help="The catalogue: .csv, .fits (binary table with units), .ecsv, or a .parquet (or suffix-less) "
                   "folder; re-running resumes.")
@click.option("--detect-threshold", type=POSITIVE, default=1.5, show_default=True,
              help="Detection threshold in sigmas of the local background noise.")
@click.option("--min-area", type=COUNT, default=5, show_default=True, help="Fewest pixels above it that make a source.")
@click.option("--cutout", type=CutoutSide(), default="auto", show_default=True,
              help="Cutout side in pixels, or auto: twice the source's extent (16 to 1024 px).")
@click.option("--threshold", type=FRACTION, default=0.5, show_default=True,
              help="Flag sources whose confidence is below this.")
@click.option("--batch", type=COUNT, default=64, show_default=True, help="Cutouts per inference call.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine; ray: a Ray cluster (the 'ray' extra), same rows.")
@click.option("--workers", type=COUNT, default=None,
              help="local: frames read and searched ahead of the model (default 2); ray: model replicas, one actor "
                   "each, that search and classify whole frames (default 1).")
@click.option("--address", default=None, help="ray: the cluster to join (default: $RAY_ADDRESS, else a new local one).")
@GPUS_PER_WORKER_OPTION
@CPUS_PER_WORKER_OPTION
@click.option("--max-pixels", type=COUNT, default=None,
              help="Refuse frames larger than this many pixels (default: Pillow's decompression-bomb limit); frames "
                   "that would not fit in the memory free are refused too.")
@BACKEND_OPTION
@CUDA_GRAPH_OPTION
def catalog(frames: tuple[Path, ...], bundle: Path, out: Path, detect_threshold: float, min_area: int,
            cutout: int | None, threshold: float, batch: int, engine: str, workers: int | None, address: str | None,
            gpus_per_worker: float, cpus_per_worker: float, max_pixels: int | None, backend: str,
            cuda_graph: bool) -> None:
    """Detect and classify the sources of survey frames into a resumable catalogue, one row per source."""
    from flare.runtime.apps.catalog import CatalogOptions, catalog_format
    from flare.runtime.core.detection import DetectionSettings
    from flare.runtime.foundation.progress import log, progress_bar
    from flare.runtime.io.images import DEFAULT_MAX_PIXELS

    catalog_format(out)  # an unknown suffix is a usage error before any model is loaded
    options = CatalogOptions(DetectionSettings(threshold=detect_threshold, min_area=min_area), cutout, threshold,
                             DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    runner = RunnerOptions(backend, spin=False, cuda_graph=cuda_graph)
    if engine == "ray":
        from flare.runtime.apps.catalog_ray import catalog_on_ray
        from flare.runtime.apps.triage_ray import BundlePredictors, RayOptions

        with progress_bar(None, "catalog (frames)") as bar:
            summary = catalog_on_ray(list(frames), BundlePredictors(str(bundle.resolve()), runner), out,
                                     options=options,
                                     ray_options=RayOptions(address=address, workers=workers or 1,
                                                            gpus_per_worker=gpus_per_worker,
                                                            cpus_per_worker=cpus_per_worker),
                                     batch_size=batch, progress=bar, on_start=bar.start)
        click.echo(summary.format())
        return
    refuse_ray_only(address, gpus_per_worker, cpus_per_worker)
    from flare.runtime.apps.catalog import catalog as run_catalog
    from flare.runtime.tasks.classify import Classifier

    with Classifier(bundle, runner) as clf, progress_bar(None, "catalog (frames)") as bar:
        log(f"running on {clf.backend}")
        summary = run_catalog(list(frames), clf, out, options=options, batch_size=batch, workers=workers,
                              progress=bar, on_start=bar.start)
    click.echo(summary.format())
