"""``flare bench``: the click command. Heavy imports stay inside it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from flare.benchmarks.targets import BENCH_BACKENDS
from flare.runtime.core.backends.options import BACKENDS
from flare.runtime.foundation.options import COUNT, PIXELS, POSITIVE, CommaList, FlareCommand, InputPath, OutputPath, RunOrName, input_size

#: Written first into --out, so a bench that stopped early may run again into the same folder
#: (reusing its bundles) while a folder of other files is refused.
STARTED = "bench-started.json"


@click.command(cls=FlareCommand)
@click.argument("bundle_or_name", metavar="BUNDLE_OR_NAME", type=RunOrName())
@click.option("--out", type=OutputPath("dir", made_by=STARTED), required=True,
              help="Folder for bench.json, bench.md, the charts and the bundles made on the fly (reused when "
                   "the bench runs again into it).")
@click.option("--backends", type=CommaList(click.Choice(BENCH_BACKENDS)), default=None,
              help=f"Comma list of {', '.join(BENCH_BACKENDS)} (default: all; each one that cannot run here "
                   "is reported with the reason).")
@click.option("--batch", "batches", type=CommaList(COUNT), default="1,8", show_default=True,
              help="Comma list of batch sizes.")
@click.option("--precision", "precisions", type=CommaList(click.Choice(["fp32", "fp16", "int8"])), default=None,
              help="Comma list (default: fp32,fp16,int8 for a RUN or name; a bundle's own precision).")
@click.option("--variants", type=CommaList(click.Choice(["plain", "fused"])), default=None,
              help="plain (float NCHW input) and/or fused (uint8 NHWC, normalised in the graph; "
                   "--fuse-preprocess). Default: both for a RUN or name; a bundle's own.")
@click.option("--iterations", type=COUNT, default=50, show_default=True, help="Timed calls per row (at most).")
@click.option("--warmup", type=COUNT, default=5, show_default=True, help="Untimed calls before timing.")
@click.option("--max-seconds", type=POSITIVE, default=30.0, show_default=True,
              help="Stop timing a row after this long (keeping at least 5 calls): large models on small CPUs.")
@click.option("--images", type=InputPath("dir"), default=None,
              help="Real images: int8 calibration, agreement (accuracy too when sub-folders name the classes) and "
                   "the end-to-end triage. Default: a RUN's test split, else a synthetic sky.")
@click.option("--weights", type=InputPath("file"), default=None, help="Local weights for a model name.")
@input_size(None)
@click.option("--tile", type=PIXELS, default=None,
              help="Super-resolution only: tile side (default: the bundle's recommendation; the test image is "
                   "--input-size, default two tiles).")
@click.option("--steps", type=COUNT, default=20, show_default=True,
              help="Generation only: sampler steps per image (DPM-Solver++ order 3, guidance 8).")
@click.option("--eval-images", type=COUNT, default=256, show_default=True,
              help="Images for agreement and accuracy (at most).")
@click.option("--survey", type=COUNT, default=256, show_default=True, help="Images in the end-to-end triage.")
@click.option("--triage-backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="Backend of the end-to-end triage (as 'flare triage --backend').")
@click.option("--triage-batch", type=COUNT, default=32, show_default=True,
              help="Batch of the end-to-end triage (as 'flare triage --batch').")
def bench(bundle_or_name: str, out: Path, backends: list[str] | None, batches: list[int],
          precisions: list[str] | None, variants: list[str] | None, iterations: int, warmup: int,
          max_seconds: float, images: Path | None, weights: Path | None, input_size: int | None,
          eval_images: int, survey: int, triage_backend: str, triage_batch: int, tile: int | None,
          steps: int) -> None:
    """Latency, throughput, memory and agreement of a model on every backend and precision here.

    BUNDLE_OR_NAME is a classify bundle (measured as it is), a training RUN or a timm model
    name (exported on the fly to each precision and variant). For super-resolution it is an
    enhance bundle, a train-sr RUN or a SwinIR configuration name (tiny_x4, realsr_l_x4, ...):
    tiled enhancement in megapixels per second, runtime against PyTorch on the same tiles
    (--batch is tiles per call, --input-size the test image's side). For generation it is a
    generate bundle, a train-diffusion RUN, a pipeline folder, or diffusion-tiny /
    diffusion-paper (random weights): seconds per image at --steps, runtime against the
    PyTorch pipeline (--batch is images per call). Writes OUT/bench.json,
    OUT/bench.md, OUT/latency.png and OUT/throughput.png.
    """
    from flare.runtime.core.sources import source_task
    from flare.runtime.core.tasks import TASKS
    from flare.runtime.foundation.atomic import write_json

    command = shlex.join(["flare", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"] else f"flare bench {bundle_or_name}"
    request = BenchRequest(
        bundle_or_name, out, command,
        Timing(backends, sorted(batches), precisions, iterations, warmup, max_seconds, input_size),
        ClassifyOptions(variants, images, weights, eval_images, survey, triage_backend, triage_batch),
        EnhanceOptions(tile), GenerateOptions(steps))
    task = source_task(bundle_or_name, _names_by_task(), default="classify")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / STARTED, {"command": command})
    TASKS[task].bench_function()(request)


@dataclass(frozen=True)
class Timing:
    """What every task's bench shares: where and how long to time."""

    backends: list[str] | None
    batches: list[int]
    precisions: list[str] | None
    iterations: int
    warmup: int
    max_seconds: float
    input_size: int | None


@dataclass(frozen=True)
class ClassifyOptions:
    """A classifier's bench only: variants, real images, weights, agreement and the end-to-end triage."""

    variants: list[str] | None
    images: Path | None
    weights: Path | None
    eval_images: int
    survey: int
    triage_backend: str
    triage_batch: int


@dataclass(frozen=True)
class EnhanceOptions:
    """A super-resolution bench only."""

    tile: int | None


@dataclass(frozen=True)
class GenerateOptions:
    """A generation bench only."""

    steps: int


@dataclass(frozen=True)
class BenchRequest:
    """``flare bench``'s options, grouped by the task they apply to; each task's bench reads its group."""

    source: str
    out: Path
    command: str
    timing: Timing
    classify: ClassifyOptions
    enhance: EnhanceOptions
    generate: GenerateOptions

    def family(self) -> dict[str, object]:
        """The timing settings as the super-resolution and generation benches take them."""
        t = self.timing
        return dict(backends=t.backends or list(BENCH_BACKENDS), precisions=t.precisions or ["fp32", "fp16"],
                    batches=t.batches, iterations=t.iterations, warmup=t.warmup, max_seconds=t.max_seconds)


def _names_by_task() -> dict[str, list[str]]:
    """The model names that are not timm's: SwinIR configurations (with torch) and named diffusion configs."""
    from flare.benchmarks.generate_bench import NAMED

    try:
        from flare.training.sr.swinir import CONFIGS
    except ImportError:  # no torch: only bundles can be measured
        CONFIGS = {}
    return {"enhance": list(CONFIGS), "generate": list(NAMED)}


def bench_enhance(request: BenchRequest) -> None:
    """Tiled enhancement (see :mod:`flare.benchmarks.sr_bench`)."""
    from flare.benchmarks import sr_bench

    _bench_family(sr_bench.run_sr_bench, sr_bench.markdown, request.source, request.out, request.command,
                  **request.family(), side=request.timing.input_size, tile=request.enhance.tile)


def bench_generate(request: BenchRequest) -> None:
    """Generation (see :mod:`flare.benchmarks.generate_bench`)."""
    from flare.benchmarks import generate_bench

    _bench_family(generate_bench.run_generate_bench, generate_bench.markdown, request.source, request.out,
                  request.command, **request.family(), steps=request.generate.steps)


def bench_classify(request: BenchRequest) -> None:
    """Every backend, precision and variant of a classifier, agreement and the end-to-end triage."""
    from flare.benchmarks.bench import Settings, run
    from flare.benchmarks.common import machine
    from flare.benchmarks.report import charts, e2e_table, headline_table, headlines, markdown, table
    from flare.benchmarks.source import resolve
    from flare.runtime.foundation.atomic import write_json, write_text
    from flare.runtime.foundation.progress import log

    t, c, out = request.timing, request.classify, request.out
    source = resolve(request.source, out, precisions=t.precisions, variants=c.variants or ["plain", "fused"],
                     images=c.images, input_size=t.input_size, weights=c.weights, eval_count=c.eval_images,
                     survey_count=c.survey)
    held = sorted({p for p, _ in source.bundles}, key=["fp32", "fp16", "int8"].index)
    settings = Settings(backends=t.backends or list(BENCH_BACKENDS), precisions=held,
                        variants=sorted({v for _, v in source.bundles}, key=["plain", "fused"].index),
                        batches=t.batches, iterations=t.iterations, warmup=t.warmup, max_seconds=t.max_seconds,
                        triage_backend=c.triage_backend, triage_batch=c.triage_batch,
                        explicit_backends=t.backends is not None)
    log(f"benchmarking {source.what}: {len(settings.backends)} backends x {', '.join(settings.precisions)} x "
        f"{', '.join(settings.variants)} x batch {', '.join(map(str, settings.batches))}")
    results = {"command": request.command, "machine": machine(), "settings": asdict(settings),
               **run(source, settings, out / "triage.csv")}
    results["headlines"] = headlines(results, settings.batches)
    write_json(out / "bench.json", results)
    write_text(out / "bench.md", markdown(results))
    try:
        drawn = charts(results, out)
    except ImportError:
        drawn = []
        log("charts skipped: matplotlib is not installed (pip install matplotlib)")
    click.echo(table(results))
    click.echo("")
    click.echo(e2e_table(results))
    click.echo("")
    click.echo(headline_table(results["headlines"]))
    click.echo(f"\nwritten: {out / 'bench.json'}, {out / 'bench.md'}" + "".join(f", {p}" for p in drawn))


def _bench_family(run: Callable[..., dict], markdown: Callable[..., str], bundle_or_name: str, out: Path,
                  command: str, **settings: object) -> None:
    """The super-resolution or generation bench (:mod:`flare.benchmarks.sr_bench`,
    :mod:`flare.benchmarks.generate_bench`): run it, write bench.json and bench.md, show the table."""
    from flare.benchmarks.common import machine
    from flare.runtime.foundation.atomic import write_json, write_text

    results = run(bundle_or_name, out, **settings)
    host = machine()
    write_json(out / "bench.json", {"command": command, "machine": host, "settings": settings, **results})
    text = markdown(results, command, host)
    write_text(out / "bench.md", text)
    click.echo(text)
    click.echo(f"written: {out / 'bench.json'}, {out / 'bench.md'}")
