"""Triage throughput of the local engine against Ray Data with 1 and 2 model workers.

    python -m flare.benchmarks.triage_engines --model BUNDLE --images DIR --out FOLDER
        [--workers 1,2] [--repeat 2] [--batch 32] [--address ADDR]

Each engine triages the folder, and a folder of its first half (symbolic links), into fresh
results (Parquet) ``--repeat`` times each; the fastest run of each is kept. Two rates: *end
to end* (the whole folder over the command's wall time, which for Ray includes joining or
starting the cluster and starting the actors) and *marginal* (the second half's images over
the time they added: fixed costs and pipeline fill cancel, which is what a survey-sized
folder sees).
Ray runs start a local instance with all cores unless ``--address`` names a cluster; with
``W`` workers each reserves ``min(1, (CPUs - 1) / W)`` CPUs so one is always left for
decoding. Writes ``triage_engines.{json,md}`` with the machine's description.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import click

from flare.benchmarks.common import write_results
from flare.runtime.apps.triage import TriageSummary
from flare.runtime.foundation.options import COUNT, CommaList, FlareCommand, InputPath, OutputPath


@dataclass
class EngineRun:
    """One engine's best run over the repeats."""

    engine: str
    workers: int
    cpus_per_worker: float | None
    images: int
    seconds: float
    images_per_second: float  #: end to end
    marginal_images_per_second: float  #: the second half's images over the time they added


def time_engine(run: Callable[[Path, Path], TriageSummary], images: Path, repeat: int) -> tuple[float, int]:
    """Fastest (seconds, images) of ``repeat`` runs over ``images``, each into fresh results."""
    best: tuple[float, int] | None = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="flare-triage-bench-") as tmp:
            started = time.perf_counter()
            summary = run(images, Path(tmp) / "results.parquet")
            seconds = time.perf_counter() - started
        if summary.processed != summary.total:
            raise click.ClickException(f"a run triaged {summary.processed} of {summary.total} files")
        if best is None or seconds < best[0]:
            best = (seconds, summary.processed)
    assert best is not None
    return best


def half_folder(images: Path, into: Path) -> Path:
    """A folder of links to the first half of ``images``' files (the same relative paths)."""
    from flare.runtime.io.images import list_images

    paths, _ = list_images(images)
    for rel in paths[: len(paths) // 2]:
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        (into / rel).symlink_to((images / rel).resolve())
    return into


def measure(engine: str, workers: int, cpus_per_worker: float | None, run: Callable[[Path, Path], TriageSummary],
            images: Path, half: Path, repeat: int) -> EngineRun:
    seconds, n = time_engine(run, images, repeat)
    half_seconds, half_n = time_engine(run, half, repeat)
    marginal = (n - half_n) / (seconds - half_seconds) if seconds > half_seconds else float("nan")
    return EngineRun(engine, workers, cpus_per_worker, n, seconds, n / seconds, marginal)


def bench_engines(bundle: Path, images: Path, workers: list[int], repeat: int, batch: int,
                  address: str | None) -> list[EngineRun]:
    """Local first, then Ray with each worker count, each over ``images`` and its first half."""
    from flare.runtime.core.backends.options import RunnerOptions
    from flare.runtime.tasks.classify import Classifier
    from flare.runtime.apps.triage import triage
    from flare.runtime.apps.triage_ray import BundlePredictors, RayOptions, triage_on_ray

    def local(folder: Path, out: Path) -> TriageSummary:
        with Classifier(bundle, RunnerOptions(spin=False)) as classifier:
            return triage(folder, classifier, out, batch_size=batch)

    rows: list[EngineRun] = []
    with tempfile.TemporaryDirectory(prefix="flare-triage-half-") as tmp:
        half = half_folder(images, Path(tmp))
        rows.append(measure("local", 1, None, local, images, half, repeat))
        cpus = _cluster_cpus(address)
        for w in workers:
            options = RayOptions(address=address, workers=w, cpus_per_worker=min(1.0, (cpus - 1) / w))

            def on_ray(folder: Path, out: Path, options: RayOptions = options) -> TriageSummary:
                return triage_on_ray(folder, BundlePredictors(str(bundle)), out, options=options, batch_size=batch)

            rows.append(measure("ray", w, options.cpus_per_worker, on_ray, images, half, repeat))
    return rows


def _cluster_cpus(address: str | None) -> float:
    """CPUs of the cluster the Ray runs will use (this machine's when none is named)."""
    if address is None and not os.environ.get("RAY_ADDRESS"):
        return float(os.cpu_count() or 1)
    from flare.runtime.apps.triage_ray import import_ray

    ray = import_ray()
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        return float(ray.cluster_resources().get("CPU", 1.0))
    finally:
        ray.shutdown()


def markdown(rows: list[EngineRun], images: Path) -> str:
    lines = [f"# Triage engines: {rows[0].images} images from {images.name}", "",
             "| engine | model workers | CPUs per worker | seconds | images/s end to end | images/s marginal | "
             "marginal vs local |", "|---|---|---|---|---|---|---|"]
    local = rows[0].marginal_images_per_second
    for r in rows:
        ratio = f"{r.marginal_images_per_second / local:.2f}x" if local else "-"
        lines.append(f"| {r.engine} | {r.workers} | {'-' if r.cpus_per_worker is None else f'{r.cpus_per_worker:g}'} | "
                     f"{r.seconds:.1f} | {r.images_per_second:.1f} | {r.marginal_images_per_second:.1f} | {ratio} |")
    return "\n".join(lines)


@click.command(cls=FlareCommand)
@click.option("--model", "bundle", type=InputPath("dir"), required=True, help="Classify bundle.")
@click.option("--images", type=InputPath("dir"), required=True, help="Folder to triage (every engine, every repeat).")
@click.option("--out", type=OutputPath("dir"), required=True, help="Folder for triage_engines.json and .md.")
@click.option("--workers", type=CommaList(COUNT), default="1,2", show_default=True, help="Ray model workers to try.")
@click.option("--repeat", type=COUNT, default=2, show_default=True, help="Runs per engine; the fastest is kept.")
@click.option("--batch", type=COUNT, default=32, show_default=True)
@click.option("--address", default=None, help="A Ray cluster to use instead of a local instance.")
def main(bundle: Path, images: Path, out: Path, workers: list[int], repeat: int, batch: int, address: str | None) -> None:
    """Time the local and Ray triage engines on one folder."""
    rows = bench_engines(bundle, images, workers, repeat, batch, address)
    text = markdown(rows, images)
    json_path, _ = write_results(out, "triage_engines", {"images": str(images), "batch": batch, "repeat": repeat,
                                                         "runs": [asdict(r) for r in rows]}, text)
    click.echo(text)
    click.echo(f"results in {json_path}")


if __name__ == "__main__":
    main()
