"""Triage on a Ray cluster (``flare triage --engine ray``): the local engine's rows, at survey scale.

The work is a Ray Data pipeline: the file list becomes a dataset of (index, path) blocks,
map tasks decode and preprocess the files (any CPU in the cluster; a file that cannot be
decoded becomes an error, never a dropped block), and an actor pool classifies them with one
model per actor (a GPU each with ``gpus_per_worker``). Rows are made by the same code as the
local engine's (:func:`flare.runtime.apps.triage.result_rows`), so both engines write the same values.

Exactly-once output comes from a single writer. Workers send their finished rows (about
200 bytes per image) back to the driver, which is the only process that writes the results:
through the same journal as the local engine (CSV appended, or Parquet parts renamed into
place), holding its lock. Therefore:

* a worker killed mid-batch is restarted by Ray and its batch redone; rows of a batch that
  was delivered twice are dropped by index before they are written;
* a killed driver takes its non-detached actors with it, so nothing writes behind its back;
  the re-run resumes from the committed rows like the local engine does, and redoes only
  what was in flight;
* the run ends by checking that every file it was given came back; if a cluster lost some,
  it says so (their rows are simply missing, and a re-run does them).

The driver lists the folder (one ``os.walk``) and keeps one key per file to do; what limits a
100-node run, and how this design meets it, is in docs/ray-triage.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from flare.runtime.apps.triage import (
    Decoded,
    Decoder,
    Predictor,
    TriageSummary,
    check_arguments,
    open_run,
    result_rows,
)
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.foundation.errors import FlareError, MissingExtraError, UsageError, one_line
from flare.runtime.io.images import DEFAULT_MAX_PIXELS

__all__ = ["BundlePredictors", "PredictorFactory", "PredictorInfo", "RayOptions", "model_actors", "open_model",
           "triage_on_ray"]

#: How often Ray may retry a decode task whose process died, or restart a model actor: enough
#: for a worker lost to a node failure, and finite, so a file that kills its decoder (a
#: codec crash, the OOM killer) ends the run instead of looping.
RETRIES = 3


class PredictorFactory(Protocol):
    """What the Ray engine needs to put a model on every actor: picklable, cheap to send.

    ``describe`` runs on the driver and must not need the model's backend (the driver may
    have no GPU); ``open`` runs once per actor.
    """

    def describe(self) -> PredictorInfo: ...

    def open(self, threads: int | None) -> Predictor: ...


@dataclass(frozen=True)
class PredictorInfo:
    """A predictor's metadata without its model: what the driver checks and records."""

    spec: PreprocessSpec
    labels: list[str]
    macro_of: dict[str, str]
    fingerprint: str


@dataclass(frozen=True)
class BundlePredictors:
    """Classifiers of one bundle on one backend: :class:`flare.runtime.tasks.classify.Classifier` per actor.

    The bundle must be at the same path on every node (a shared file system), like the images.
    """

    bundle: str
    options: RunnerOptions = RunnerOptions(spin=False)

    def describe(self) -> PredictorInfo:
        from flare.runtime.core.manifest import Manifest
        from flare.runtime.foundation.fingerprint import fingerprint_path
        from flare.runtime.tasks.classify import Classifier

        manifest = Classifier.load_manifest(Path(self.bundle))
        assert manifest.labels is not None  # required of classify bundles
        return PredictorInfo(PreprocessSpec.from_dict(manifest.preprocessing), list(manifest.labels.classes),
                             dict(manifest.labels.macro_of), fingerprint_path(Path(self.bundle) / Manifest.FILE))

    def open(self, threads: int | None) -> Predictor:
        from flare.runtime.tasks.classify import Classifier

        return Classifier(self.bundle, dataclasses.replace(self.options, threads=threads))


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run. ``address`` None starts (or, with ``RAY_ADDRESS`` set,
    joins) a cluster as :func:`ray.init` does; ``workers`` is the number of model actors."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    #: Files per input block: one decode task each. Small enough to spread a folder over
    #: every CPU and keep retries cheap; large enough that scheduling is not the cost.
    files_per_block: int = 256


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the part we use
    except ImportError as exc:
        raise MissingExtraError("--engine ray", "ray") from exc
    return ray


def triage_on_ray(
    root: Path,
    predictors: PredictorFactory,
    out: Path,
    *,
    options: RayOptions = RayOptions(),
    threshold: float = 0.5,
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TriageSummary:
    """Classify every image under ``root`` into ``out`` on Ray, resuming what is already there.

    The same arguments, rows and summary as :func:`flare.runtime.apps.triage.triage`.
    """
    # Workers read files by absolute path: a relative one would be resolved in their own
    # working directory, on another machine.
    root = Path(root).resolve()
    check_arguments(root, threshold, batch_size, None)
    _check_options(options)
    ray = import_ray()
    described = predictors.describe()
    notes: dict[str, None] = {}
    with open_run(root, out, described, threshold, max_pixels) as run:
        todo = run.todo
        if on_start is not None:
            on_start(len(todo))
        started = time.perf_counter()
        if todo:
            with _connected(ray, options):
                dataset = _pipeline(ray, root, todo, predictors, described, batch_size, max_pixels, threshold,
                                    options)
                seen = np.zeros(len(todo), dtype=bool)
                with _ray_errors(ray):
                    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                        failure = next((f for f in batch["failure"].tolist() if f), "")
                        if failure:
                            raise FlareError(failure)
                        notes.update(dict.fromkeys(note for note in batch["notes"].tolist() if note))
                        rows = []
                        for index, cells in zip(batch["index"].tolist(), batch["row"].tolist()):
                            if not seen[index]:  # a batch redone after a worker died comes back twice
                                seen[index] = True
                                rows.append([todo[index][1], *json.loads(cells)])
                        run.append(rows)
                        if progress is not None and rows:
                            progress(len(rows))
            if run.processed < len(todo):
                raise FlareError(f"the cluster returned no row for {len(todo) - run.processed} of {len(todo)} files "
                                 f"(e.g. {root / todo[int(np.argmin(seen))][0]}); the {run.processed} rows it did "
                                 f"return are in {out}, re-run the same command to do the rest")
        elapsed = time.perf_counter() - started
    return run.summary(elapsed, notes)


def _check_options(options: RayOptions) -> None:
    if options.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {options.workers}")
    if options.gpus_per_worker < 0 or options.cpus_per_worker <= 0:
        raise UsageError("--gpus-per-worker must be 0 or more and --cpus-per-worker more than 0")


@contextmanager
def _connected(ray: Any, options: RayOptions, spare_cpus: int = 1) -> Iterator[None]:
    """Join (or start) the cluster, check it can hold the actors and ``spare_cpus`` more (see
    :func:`_check_capacity`), and leave it as found. A caller that has already connected to
    Ray (``ray.init``) keeps its connection; ``address`` is then not used."""
    started_here = not ray.is_initialized()
    loggers = {name: logging.getLogger(name) for name in ("ray", "ray.data")}
    levels = {name: logger.level for name, logger in loggers.items()}
    for logger in loggers.values():  # Ray's own logs stay in its session folder
        logger.setLevel(logging.ERROR)
    if started_here:
        # Not Ray's own default, which would also join the cluster 'ray start' last started
        # on this machine, or hang on its address when that one is gone: what is not named is new.
        address = options.address or os.environ.get("RAY_ADDRESS") or "local"
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            if isinstance(exc, getattr(ray.exceptions, "AuthenticationError", ())):  # Ray 2.52 and later
                raise FlareError(f"the Ray cluster at {address} uses token authentication: set RAY_AUTH_MODE=token "
                                 f"and its token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine") from exc
            raise FlareError(f"cannot reach a Ray cluster at {'a new local instance' if address == 'local' else address}: "
                             f"{exc}; start one with 'ray start --head' and pass its address to --address") from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours counts rows as they are written
        context.print_on_execution_start = False
        _check_capacity(ray.cluster_resources(), options, spare_cpus)
        yield
    finally:
        if started_here:
            ray.shutdown()
        for name, logger in loggers.items():
            logger.setLevel(levels[name])


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` nothing answers on: Ray itself would retry it for many minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or "://" in address or not port.isdigit():
        return  # 'auto', 'local' or a ray:// client address: Ray's own rules apply
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()  # [::1]:6379 is IPv6
    except OSError as exc:
        raise FlareError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                         f"'ray start --head --port={port}' or fix --address") from exc
    except (ValueError, OverflowError) as exc:  # a label over 63 characters (idna); a port past 65535
        raise UsageError(f"--address {address} is not a host:port Ray could reach ({one_line(str(exc))}); "
                         "fix --address") from exc


def _check_capacity(resources: dict[str, float], options: RayOptions, spare_cpus: int = 1) -> None:
    """Refuse a request the cluster cannot place, which Ray would otherwise wait on forever.

    ``spare_cpus`` is what the pipeline needs besides the actors: triage's decode tasks need
    one; an engine whose actors read their own inputs (the catalogue's) needs none.
    """
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    actor_cpus = options.workers * options.cpus_per_worker
    if cpus - actor_cpus < spare_cpus:
        left = "leave none for decoding" if spare_cpus else "do not fit"
        raise UsageError(f"the Ray cluster has {cpus:g} CPUs; {options.workers} workers x {options.cpus_per_worker:g} "
                         f"CPUs {left}: lower --workers or --cpus-per-worker")
    if options.workers * options.gpus_per_worker > gpus:
        raise UsageError(f"the Ray cluster has {gpus:g} GPUs; {options.workers} workers x "
                         f"{options.gpus_per_worker:g} GPUs do not fit: lower --workers or --gpus-per-worker "
                         f"(an autoscaling cluster: start its GPU nodes first)")


def _pipeline(ray: Any, root: Path, todo: list[tuple[str, str]], predictors: PredictorFactory,
              described: PredictorInfo, batch_size: int, max_pixels: int, threshold: float,
              options: RayOptions) -> Any:
    """The dataset of finished rows: blocks of (index, path) -> decode tasks -> model actors."""
    import pyarrow as pa

    # Paths travel as bytes: a POSIX name need not be UTF-8, which Arrow strings must be.
    paths = pa.array([os.fsencode(root / rel) for rel, _ in todo], type=pa.binary())
    indices = pa.array(np.arange(len(todo), dtype=np.int64))
    table = pa.table({"index": indices, "path": paths})
    step = options.files_per_block
    files = ray.data.from_arrow([table.slice(i, step) for i in range(0, len(todo), step)])
    spec = described.spec
    sample = preprocess(np.zeros((8, 8, 3), dtype=np.uint8), spec)  # the tensor every file becomes
    # Decode tasks reserve the memory of the tensors they make, so Ray packs no more of them on
    # a node than it holds. That reservation, which the actors lack, also keeps Ray from fusing
    # decoding into the actors: it stays in its own tasks, spread over every CPU of the cluster.
    # Retries are set here, as Ray Data's only way to bound them; Ray 2.64 drops that way,
    # hence the extra's upper bound.
    block_bytes = 2 * options.files_per_block * sample.nbytes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        decoded = files.map_batches(
            _decode_block, fn_kwargs={"decode": Decoder(spec, max_pixels), "shape": sample.shape,
                                      "dtype": sample.dtype.str},
            batch_size=None, batch_format="numpy", num_cpus=1, memory=block_bytes, max_retries=RETRIES)
    return model_actors(ray, decoded, _ClassifyActor, {"predictors": predictors, "described": described,
                                                       "threshold": threshold}, batch_size, options)


def model_actors(ray: Any, dataset: Any, actor: type, arguments: dict[str, Any], batch_size: int,
                 options: RayOptions) -> Any:
    """``dataset`` mapped by a pool of ``options.workers`` actors of class ``actor``, each built
    with ``arguments`` and ``threads`` (its CPUs: a node's actors must not each spread over all
    of its cores), restarted and their batches redone up to :data:`RETRIES` times."""
    # Retries are set here, as Ray Data's only way to bound them (see _pipeline).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return dataset.map_batches(
            actor, fn_constructor_kwargs={**arguments, "threads": max(1, int(options.cpus_per_worker))},
            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
            max_restarts=RETRIES, max_task_retries=RETRIES)


def open_model(predictors: PredictorFactory, described: PredictorInfo, threads: int) -> tuple[Predictor | None, str]:
    """The model of one actor, or None and why not: it failed to open, or it is not the one the
    driver described. Actors keep the reason and report it on every row, since Ray hands the
    driver a worker's exception only as text, and a constructor's would end the actor before it
    could say anything."""
    try:
        predictor = predictors.open(threads)
    except FlareError as exc:
        return None, str(exc)
    if predictor.fingerprint != described.fingerprint:
        return None, (f"a Ray worker on {socket.gethostname()} opened another model than the driver "
                      f"(fingerprint {predictor.fingerprint[:12]}, not {described.fingerprint[:12]}); "
                      f"give every node the same bundle at the same path")
    return predictor, ""


@contextmanager
def _ray_errors(ray: Any) -> Iterator[None]:
    """Ray's own failures (a worker lost more often than :data:`RETRIES`, a node gone) as one
    line that says what to do. The rows written before stay; a re-run continues after them."""
    try:
        yield
    except ray.exceptions.RayError as exc:
        raise FlareError(f"the Ray job failed: {one_line(str(exc))[:400]}; the rows written so far are kept, "
                         f"re-run the same command to continue") from exc


def _decode_block(batch: dict[str, np.ndarray], decode: Decoder, shape: tuple[int, ...], dtype: str) -> dict[str, np.ndarray]:
    """Decode one block's files: a tensor per file (zeros where it failed) and its error, if any."""
    tensors = np.zeros((len(batch["index"]), *shape), dtype=np.dtype(dtype))
    errors = np.empty(len(tensors), dtype=object)
    for i, raw in enumerate(batch["path"]):
        path = Path(os.fsdecode(bytes(raw)))
        item = decode((path, ""))
        errors[i] = item.error
        if item.tensor is not None:
            tensors[i] = item.tensor
    return {"index": batch["index"], "tensor": tensors, "error": errors}


class _ClassifyActor:
    """One model per actor, opened once; turns decoded batches into the local engine's rows
    (without the path, which the driver adds back by index). The first batch also carries the
    backend's notes, so the driver can show what a worker's backend dropped."""

    def __init__(self, predictors: PredictorFactory, described: PredictorInfo, threshold: float, threads: int) -> None:
        self.labels, self.macro_of, self.threshold = described.labels, described.macro_of, threshold
        # Our errors travel as data (see open_model and __call__).
        self.predictor, self.failure = open_model(predictors, described, threads)
        self.notes = "; ".join(self.predictor.notes) if self.predictor else ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["index"])
        notes, failures = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        if not self.failure:
            items = [Decoded("", None if error else tensor, error)
                     for tensor, error in zip(batch["tensor"], batch["error"])]
            try:
                rows = result_rows(items, self.predictor, self.labels, self.macro_of, self.threshold)
            except FlareError as exc:  # e.g. the model's output does not fit its labels
                self.failure = str(exc)
        if self.failure:
            failures[:] = self.failure
            return {"index": batch["index"], "row": np.full(n, "", dtype=object), "notes": notes, "failure": failures}
        if self.notes and n:
            notes[0], self.notes = self.notes, ""
        return {"index": batch["index"], "row": np.array([json.dumps(row[1:]) for row in rows], dtype=object),
                "notes": notes, "failure": failures}
