"""Offline batch triage of a survey folder on this machine: one row per image, safe to stop and resume.

Built for folders of 100k files on a laptop or an edge box, where a run can end at any
moment (Ctrl-C, the OOM killer, a power cut). Hence:

* rows go through a results journal (:mod:`flare.runtime.apps.results`): a CSV appended one
  batch at a time, each batch in a single ``write`` of whole lines followed by ``fsync``, or
  a Parquet folder whose parts are renamed into place; a kill loses at most the rows not yet
  committed and never leaves a duplicate row;
* re-running with the same results skips every path already in them (a CSV first cuts off a
  torn last line, the only damage a kill in the middle of a write can leave);
* decoding runs on a thread pool a few batches ahead of inference (Pillow and numpy release
  the GIL), with a bounded window so memory stays flat however large the folder is;
* a file that cannot be decoded becomes an ``error`` row instead of ending the run.

The classifier is anything that satisfies :class:`Predictor`; this module never imports a
training framework, so it runs wherever the runtime does.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from flare.runtime.apps.results import FIXED_COLUMNS, ParquetJournal, open_journal, result_key, utf8_text
from flare.runtime.core.preprocess import PreprocessSpec, preprocess
from flare.runtime.core.taxonomy import macro_probabilities
from flare.runtime.foundation.errors import FlareError, ImageDecodeError, UsageError, one_line
from flare.runtime.foundation.journal import CsvJournal
from flare.runtime.io.images import DEFAULT_MAX_PIXELS, list_images, load_rgb

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FIXED_COLUMNS",
    "ModelInfo",
    "Predictor",
    "Run",
    "TriageSummary",
    "Decoder",
    "csv_header",
    "decode_ahead",
    "default_workers",
    "open_run",
    "result_rows",
    "triage",
]

_PATH, _FINE, _FLAGGED, _STATUS = 0, 1, 4, 5

#: What to do when a results file was made with other settings (either engine).
RESUME_HINT = "triage into another --out, or delete the results to start over"

#: How many batches the decoders may run ahead of inference: enough to hide decode latency
#: behind ``predict``, few enough that a 100k-file folder never piles up in memory.
PREFETCH_BATCHES = 3


class ModelInfo(Protocol):
    """What results are checked and recorded against: a model's labels, preprocessing and
    ``fingerprint``, which changes whenever the predictions could (a checksum of the model),
    so a resumed result never mixes rows of two models."""

    spec: PreprocessSpec
    labels: list[str]
    macro_of: dict[str, str]
    fingerprint: str


class Predictor(ModelInfo, Protocol):
    """What triage needs from a classifier; a loaded bundle satisfies it, and so does a fake.

    ``notes`` says what the backend dropped while starting (empty when nothing was).
    """

    notes: list[str]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A batch of :func:`preprocess` outputs -> (N, len(labels)) probabilities summing to 1."""
        ...


@dataclass(frozen=True)
class TriageSummary:
    """What a run did and what the results file now holds.

    ``processed``, ``skipped`` and ``images_per_second`` describe this run only; the class
    counts, ``flagged`` and ``errors`` describe the whole results, earlier (resumed) runs included,
    because the file is the result the user acts on.
    """

    root: Path
    out: Path
    threshold: float
    total: int  #: supported files found under ``root``
    processed: int  #: rows written by this run
    skipped: int  #: files already in the results, not triaged again
    class_counts: dict[str, int]  #: ``ok`` rows per fine class, in label order
    flagged: int  #: rows flagged for review (low confidence)
    errors: int  #: ``error`` rows (files that could not be decoded)
    images_per_second: float  #: this run's throughput, decoding included
    unlisted_dirs: tuple[str, ...] = field(default=())  #: folders that could not be listed
    backend_notes: tuple[str, ...] = field(default=())  #: what the backend dropped while starting

    @property
    def classified(self) -> int:
        """Rows with a prediction in the whole results."""
        return sum(self.class_counts.values())

    def format(self) -> str:
        """A few lines for the terminal: what happened, what needs a look, where it went."""
        lines = [
            f"{self.total} image files under {self.root}: {self.processed} triaged in this run"
            + (f" ({self.images_per_second:.1f} images/s)" if self.processed else "")
            + (f", {self.skipped} already done" if self.skipped else ""),
            f"{self.out}: {self.classified} classified, {self.flagged} flagged for review "
            f"(confidence < {self.threshold:g}), {self.errors} unreadable",
        ]
        counts = [f"{name} {n}" for name, n in self.class_counts.items() if n]
        if counts:
            lines.append("classes: " + ", ".join(counts))
        for note in self.backend_notes:
            lines.append(f"backend: {note}")
        if self.unlisted_dirs:
            lines.append(
                f"{len(self.unlisted_dirs)} folder(s) could not be listed and were left out, "
                f"e.g. {self.unlisted_dirs[0]}"
            )
        return "\n".join(lines)


def csv_header(labels: list[str]) -> list[str]:
    """The results columns for a model with these fine labels: the fixed ones, one
    probability per class, then the macro class's confidence (its summed probability)."""
    return [*FIXED_COLUMNS, *(f"p_{label}" for label in labels), "macro_confidence"]


def triage(
    root: Path,
    predictor: Predictor,
    out: Path,
    *,
    threshold: float = 0.5,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TriageSummary:
    """Classify every image under ``root`` into ``out``, resuming what is already there.

    Rows are ``flagged`` when the top-1 confidence, as written, is below ``threshold``.
    ``on_start`` gets the number of files left to do once the folder and the results have been
    read; ``progress`` gets the number of files finished since its previous call. Undecodable files
    become ``error`` rows; an exception from ``predictor.predict`` propagates, and the rows
    written before it stay (the next run resumes after them).
    """
    root = Path(root).resolve()
    check_arguments(root, threshold, batch_size, workers)
    with open_run(root, out, predictor, threshold, max_pixels) as run:
        if on_start is not None:
            on_start(len(run.todo))
        jobs = [(root / rel, key) for rel, key in run.todo]
        n_workers = workers or default_workers()
        window = max(batch_size * PREFETCH_BATCHES, n_workers)
        started = time.perf_counter()
        decode = Decoder(predictor.spec, max_pixels)
        with closing(decode_ahead(jobs, decode, n_workers, window)) as decoded:
            while batch := list(itertools.islice(decoded, batch_size)):
                rows = result_rows(batch, predictor, run.labels, run.macro_of, threshold)
                run.append(rows)
                if progress is not None:
                    progress(len(rows))
        elapsed = time.perf_counter() - started
    return run.summary(elapsed, predictor.notes)


@dataclass
class Run:
    """A results journal opened for one folder: what earlier runs wrote and what is left.

    Both engines resume through it, so they skip, count and refuse the same way.
    """

    root: Path
    out: Path
    threshold: float
    labels: list[str]
    macro_of: dict[str, str]
    journal: CsvJournal | ParquetJournal
    paths: list[str]  #: every supported file under ``root``
    unlisted: list[str]  #: folders that could not be listed
    todo: list[tuple[str, str]]  #: (relative path, results key) of the files not in the results yet
    tally: _Tally
    processed: int = 0  #: rows appended by this run

    def append(self, rows: list[list[str]]) -> None:
        """Record whole rows of this run (their first cell is the results key)."""
        self.journal.append(rows)
        for row in rows:
            self.tally.add(row)
        self.processed += len(rows)

    def summary(self, elapsed: float, notes: Iterable[str]) -> TriageSummary:
        return TriageSummary(
            root=self.root, out=self.out, threshold=self.threshold, total=len(self.paths),
            processed=self.processed, skipped=len(self.paths) - len(self.todo),
            class_counts=dict(self.tally.classes), flagged=self.tally.flagged, errors=self.tally.errors,
            images_per_second=self.processed / elapsed if self.processed and elapsed > 0 else 0.0,
            unlisted_dirs=tuple(self.unlisted), backend_notes=tuple(notes),
        )


@contextmanager
def open_run(root: Path, out: Path, model: ModelInfo, threshold: float, max_pixels: int) -> Iterator[Run]:
    """List ``root`` and open ``out`` for resume with ``model`` (only its labels, spec and
    fingerprint are read); the journal is closed, and what it buffered committed, on exit."""
    labels, macro_of = _check_predictor(model)
    paths, unlisted = list_images(root, exclude=Path(out))
    with open_journal(Path(out), csv_header(labels), RESUME_HINT, results_settings(root, model, threshold, max_pixels),
                      resume_columns=len(FIXED_COLUMNS)) as journal:
        tally = _Tally(labels)
        done: set[str] = set()
        for row in journal.rows:
            tally.add(row)
            done.add(row[_PATH])
        todo = [(rel, key) for rel in paths if (key := result_key(rel)) not in done]
        yield Run(root, Path(out), threshold, labels, macro_of, journal, paths, unlisted, todo, tally)


def results_settings(root: Path, predictor: ModelInfo, threshold: float, max_pixels: int) -> dict[str, object]:
    """What makes a results file's rows, kept beside it (see :mod:`flare.runtime.foundation.fingerprint`):
    resuming with another model, threshold, pixel limit or folder is refused, whichever
    engine ran. ``DIR`` is also how ``flare report`` finds the images again."""
    return {"DIR": str(Path(root).resolve()), "--model": predictor.fingerprint, "--threshold": threshold,
            "--max-pixels": max_pixels, "preprocessing": predictor.spec.to_dict()}


def default_workers() -> int:
    """Decoding threads when not told: one per core, up to 8 (beyond that inference is the limit)."""
    return min(8, os.cpu_count() or 1)


def check_arguments(root: Path, threshold: float, batch_size: int, workers: int | None) -> None:
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
    if batch_size < 1:
        raise UsageError(f"--batch must be at least 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")


def _check_predictor(predictor: ModelInfo) -> tuple[list[str], dict[str, str]]:
    """Fail before any work if the model's labels cannot make a well-formed result."""
    labels = list(predictor.labels)
    if not labels or len(set(labels)) != len(labels):
        raise FlareError(f"the model's labels must be non-empty and distinct, got {labels}")
    missing = [label for label in labels if label not in predictor.macro_of]
    if missing:
        raise FlareError(f"the model has no macro class for {missing}")
    return labels, dict(predictor.macro_of)


class _Tally:
    """Counts over result rows, fed both the rows found on resume and the ones written now."""

    def __init__(self, labels: list[str]) -> None:
        self.classes = {label: 0 for label in labels}
        self.flagged = 0
        self.errors = 0

    def add(self, row: list[str]) -> None:
        if row[_STATUS] == "ok":
            self.classes[row[_FINE]] = self.classes.get(row[_FINE], 0) + 1
        else:
            self.errors += 1
        self.flagged += row[_FLAGGED] == "1"


# --- decoding and inference (``flare bench`` times the decoding alone with the same pool) ----


@dataclass(frozen=True)
class Decoded:
    """One file, ready for the network (``tensor``) or not (``error``)."""

    key: str
    tensor: np.ndarray | None
    error: str = ""


@dataclass(frozen=True)
class Decoder:
    """Decode and preprocess one file on a worker thread, turning every failure into a row."""

    spec: PreprocessSpec
    max_pixels: int

    def __call__(self, job: tuple[Path, str]) -> Decoded:
        path, key = job
        try:
            rgb = load_rgb(path, max_pixels=self.max_pixels, stretch=self.spec.stretch)
            return Decoded(key, preprocess(rgb, self.spec))
        except ImageDecodeError as exc:
            return Decoded(key, None, utf8_text(one_line(str(exc))))
        except Exception as exc:  # noqa: BLE001 - one odd file must not end a 100k-file run
            return Decoded(key, None, utf8_text(one_line(f"{path}: {type(exc).__name__}: {exc}")))


def decode_ahead(
    jobs: list[tuple[Path, str]],
    decode: Callable[[tuple[Path, str]], Decoded],
    workers: int,
    window: int,
) -> Iterator[Decoded]:
    """Yield decoded files in ``jobs`` order while at most ``window`` are decoded ahead.

    Closing the generator (the caller's ``closing``) cancels what was queued, so an error
    in ``predict`` or a Ctrl-C does not first decode the rest of the window.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flare-decode")
    try:
        pending: deque[Future[Decoded]] = deque()
        remaining = iter(jobs)
        for job in itertools.islice(remaining, window):
            pending.append(pool.submit(decode, job))
        while pending:
            result = pending.popleft().result()
            job = next(remaining, None)
            if job is not None:
                pending.append(pool.submit(decode, job))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def result_rows(
    batch: list[Decoded],
    predictor: Predictor,
    labels: list[str],
    macro_of: dict[str, str],
    threshold: float,
) -> list[list[str]]:
    """Result rows (as the CSV writes them) for one batch, in order; only the decoded files go
    through the model. Both engines make their rows here, so they write the same values."""
    good = [d.tensor for d in batch if d.tensor is not None]
    probs = _predict(predictor, np.stack(good), len(labels)) if good else np.zeros((0, len(labels)))
    macros, macro_probs = macro_probabilities(probs, labels, macro_of)
    predicted = iter(zip(probs, macro_probs))
    blank = [""] * (len(labels) + 1)
    rows: list[list[str]] = []
    for item in batch:
        if item.tensor is None:
            rows.append([item.key, "", "", "", "", "error", item.error, *blank])
            continue
        p, m = next(predicted)
        top, macro = int(np.argmax(p)), int(np.argmax(m))
        confidence = f"{p[top]:.6f}"
        # Compare what is written, so the file agrees with itself (0.4999996 shows 0.500000).
        flagged = "1" if float(confidence) < threshold else "0"
        rows.append([item.key, labels[top], macros[macro], confidence, flagged, "ok", "",
                     *(f"{v:.6f}" for v in p), f"{m[macro]:.6f}"])
    return rows


def _predict(predictor: Predictor, batch: np.ndarray, n_labels: int) -> np.ndarray:
    probs = np.asarray(predictor.predict(batch), dtype=np.float64)
    if probs.shape != (len(batch), n_labels):
        raise FlareError(
            f"the model returned probabilities of shape {probs.shape} for a batch of "
            f"{len(batch)}; expected ({len(batch)}, {n_labels}) to match its labels"
        )
    return probs
