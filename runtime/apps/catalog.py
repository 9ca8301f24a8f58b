"""``flare catalog``: survey frames in, a source catalogue out, one row per source.

For each frame: background and noise, detection with deblending
(:mod:`flare.runtime.core.detection`), one cutout per source sized from its extent, resampled
to the bundle's input as training images are (:func:`flare.runtime.core.preprocess.preprocess`),
classified in batches; WCS frames get RA/Dec. The run is triage's, generalised rather than
copied: the same results journal (CSV appended in whole writes and repaired on resume, or a
Parquet folder of renamed parts), the same record of settings that refuses a resume with
another model or other options, the same read-ahead pool (:func:`flare.runtime.apps.triage.decode_ahead`)
and the same rows of probabilities (:func:`flare.runtime.apps.triage.result_rows`).

What differs is the unit of work: a frame gives many rows, and they are appended together, so
a kill leaves each frame all there or not there. Every row carries ``sources``, the frame's
count, and a CSV whose last frame is short of it (a kill inside one long write) has that
frame cut off on resume (``whole`` of :class:`flare.runtime.foundation.journal.CsvJournal`);
a Parquet part holds whole appends by construction. A frame without sources gets one
``empty`` row and an unreadable frame one ``error`` row, so a resume knows both were done.

Memory stays flat: at most ``workers`` frames are decoded and searched ahead of the model,
each is dropped once its rows are written, and a frame too large for the memory free is
refused from its header before any pixel is read (:func:`flare.runtime.io.frames.check_memory`).
"""

from __future__ import annotations

import os
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from flare.runtime.apps.results import Kind, open_journal, result_key, results_format, utf8_text
from flare.runtime.apps.triage import Decoded, ModelInfo, Predictor, decode_ahead, result_rows
from flare.runtime.core.detection import BYTES_PER_PIXEL, DetectionSettings, Sources, detect
from flare.runtime.core.preprocess import preprocess
from flare.runtime.foundation.errors import ImageDecodeError, UsageError, one_line
from flare.runtime.io.frames import Frame, available_memory, check_memory, read_frame
from flare.runtime.io.images import DEFAULT_MAX_PIXELS, list_images

#: Columns before the per-class probabilities; ``error`` comes last.
SOURCE_COLUMNS: tuple[str, ...] = (
    "frame", "source_id", "status", "sources", "x", "y", "ra", "dec", "flux", "flux_err", "a", "b", "theta",
    "area", "fine_class", "confidence", "macro_class", "macro_confidence", "flagged",
)
_TEXT = frozenset({"frame", "status", "fine_class", "macro_class", "error"})
_INT = frozenset({"source_id", "sources", "area"})
_FRAME, _ID, _STATUS, _SOURCES = 0, 1, 2, 3
#: Units of the numeric columns (the FITS and ECSV tables carry them).
UNITS = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "a": "pix", "b": "pix", "theta": "deg",
         "area": "pix2"}

#: What to do when a catalogue was made with other settings.
RESUME_HINT = "catalogue into another --out, or delete the catalogue to start over"

#: Cutout sides for ``--cutout auto``: twice the source's extent, within these bounds.
MIN_CUTOUT, MAX_CUTOUT = 16, 1024


def catalog_header(labels: list[str]) -> list[str]:
    return [*SOURCE_COLUMNS, *(f"p_{label}" for label in labels), "error"]


def catalog_kind(name: str) -> Kind:
    """How the catalogue types a column in Parquet (and FITS)."""
    return "text" if name in _TEXT else "int" if name in _INT else "bool" if name == "flagged" else "float"


def is_catalog_header(header: list[str]) -> bool:
    """Whether a results header is a catalogue's (``flare report`` tells the two apart with it)."""
    return list(header[:len(SOURCE_COLUMNS)]) == list(SOURCE_COLUMNS)


def whole_frames(rows: list[list[str]]) -> int:
    """How many leading rows form whole frames: only the last frame can be short (see the module docstring)."""
    start = len(rows)
    while start > 0 and rows[start - 1][_FRAME] == rows[-1][_FRAME]:
        start -= 1
    expected = rows[start][_SOURCES]
    return len(rows) if not expected.isdigit() or len(rows) - start >= max(1, int(expected)) else start


@dataclass(frozen=True)
class CatalogOptions:
    """What makes the rows, besides the model: detection, cutouts, flagging and the pixel limit."""

    detection: DetectionSettings = DetectionSettings()
    cutout: int | None = None  #: a fixed cutout side; None is ``auto``
    threshold: float = 0.5  #: rows below this confidence are flagged
    max_pixels: int = DEFAULT_MAX_PIXELS

    def settings(self, root: Path, model: ModelInfo) -> dict[str, object]:
        """The record kept beside a catalogue (see :func:`flare.runtime.apps.triage.results_settings`)."""
        return {"DIR": str(root), "--model": model.fingerprint, "--detect-threshold": self.detection.threshold,
                "--min-area": self.detection.min_area, "--cutout": self.cutout or "auto",
                "--threshold": self.threshold, "--max-pixels": self.max_pixels,
                "detection": self.detection.to_dict(), "preprocessing": model.spec.to_dict()}


def parse_cutout(text: str) -> int | None:
    """``auto`` (None) or a side of at least 4 pixels; ValueError saying why not."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        side = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither 'auto' nor a whole number of pixels") from None
    if side < 4:
        raise ValueError(f"a cutout needs a side of at least 4 pixels, not {side}")
    return side


def cutout_box(sources: Sources, i: int, side: int | None, height: int, width: int) -> tuple[int, int, int, int]:
    """The (x0, x1, y0, y1) end-exclusive box of source ``i``'s cutout, clipped to the frame:
    ``side`` pixels square, or (auto) twice the extent of its pixels above the threshold."""
    if side is None:
        extent = max(sources.xmax[i] - sources.xmin[i] + 1, sources.ymax[i] - sources.ymin[i] + 1)
        side = int(min(MAX_CUTOUT, max(MIN_CUTOUT, 2 * extent)))
    x0 = int(round(sources.x[i])) - side // 2
    y0 = int(round(sources.y[i])) - side // 2
    return max(0, x0), min(width, x0 + side), max(0, y0), min(height, y0 + side)


# --- one frame ------------------------------------------------------------------------------


@dataclass
class Searched:
    """A frame after detection, waiting for the model (``error`` set when it could not be read)."""

    key: str
    frame: Frame | None = None
    sources: Sources | None = None
    world: tuple[np.ndarray, np.ndarray] | None = None
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Searcher:
    """Read and search one frame on a worker thread, turning every failure into an error row."""

    options: CatalogOptions
    stretch: object  # StretchSpec of the bundle

    def __call__(self, job: tuple[Path, str]) -> Searched:
        path, key = job
        try:
            started = time.perf_counter()
            check_memory(path, BYTES_PER_PIXEL, self.options.max_pixels, available_memory())
            frame = read_frame(path, self.stretch, self.options.max_pixels)  # type: ignore[arg-type]
            read = time.perf_counter() - started
            sources = detect(frame.search, self.options.detection)
            frame.search = np.empty((0, 0), np.float32)  # the background-subtracted copy is not needed again
            world = sky_positions(frame.wcs, sources) if frame.wcs is not None else None
            return Searched(key, frame, sources, world, seconds={"read": read, **sources.seconds})
        except ImageDecodeError as exc:
            return Searched(key, error=utf8_text(one_line(str(exc))))
        except Exception as exc:  # noqa: BLE001 - one odd frame must not end a survey
            return Searched(key, error=utf8_text(one_line(f"{path}: {type(exc).__name__}: {exc}")))


def sky_positions(wcs: object, sources: Sources) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (degrees, in the WCS's own frame) of the sources' 0-based pixel centroids."""
    if len(sources) == 0:
        return np.zeros(0), np.zeros(0)
    sky = wcs.pixel_to_world(sources.x, sources.y)  # type: ignore[attr-defined]
    spherical = sky.spherical
    return np.asarray(spherical.lon.deg, dtype=np.float64), np.asarray(spherical.lat.deg, dtype=np.float64)


def frame_rows(item: Searched, predictor: Predictor, labels: list[str], macro_of: dict[str, str],
               options: CatalogOptions, batch_size: int, timing: dict[str, float] | None = None) -> list[list[str]]:
    """The catalogue rows of one searched frame: its sources classified ``batch_size`` cutouts at a time."""
    blank_class = [""] * (5 + len(labels))
    if item.frame is None or item.sources is None:
        return [[item.key, "", "error", "0", *[""] * 10, *blank_class, item.error]]
    sources, frame = item.sources, item.frame
    n = len(sources)
    if n == 0:
        return [[item.key, "", "empty", "0", *[""] * 10, *blank_class, ""]]
    height, width = frame.pixels.shape[-2:] if frame.fits else frame.pixels.shape[:2]
    stretch = predictor.spec.stretch
    rows: list[list[str]] = []
    for start in range(0, n, batch_size):
        started = time.perf_counter()
        batch = [Decoded("", preprocess(frame.cutout(cutout_box(sources, i, options.cutout, height, width), stretch),
                                        predictor.spec))
                 for i in range(start, min(n, start + batch_size))]
        cut = time.perf_counter()
        classified = result_rows(batch, predictor, labels, macro_of, options.threshold)
        if timing is not None:
            timing["cutouts"] = timing.get("cutouts", 0.0) + cut - started
            timing["model"] = timing.get("model", 0.0) + time.perf_counter() - cut
        for i, cells in zip(range(start, start + len(batch)), classified):
            _, fine, macro, confidence, flagged, _, _, *probabilities = cells
            ra, dec = ("", "") if item.world is None else (f"{item.world[0][i]:.6f}", f"{item.world[1][i]:.6f}")
            rows.append([item.key, str(i + 1), "ok", str(n), f"{sources.x[i]:.6f}", f"{sources.y[i]:.6f}", ra, dec,
                         f"{sources.flux[i]:.6f}", f"{sources.flux_err[i]:.6f}", f"{sources.a[i]:.6f}",
                         f"{sources.b[i]:.6f}", f"{sources.theta[i]:.6f}", str(int(sources.area[i])), fine,
                         confidence, macro, probabilities[-1], flagged, *probabilities[:-1], ""])
    return rows


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogSummary:
    """What a run did (``processed``, rates, classes) and what the catalogue now holds (the rest)."""

    root: Path
    out: Path
    frames: int  #: frames given
    processed: int  #: frames catalogued by this run
    skipped: int  #: frames already in the catalogue
    sources: int  #: sources in the whole catalogue
    errors: int  #: unreadable frames in the whole catalogue
    class_counts: dict[str, int]  #: this run's sources per fine class
    seconds: float  #: this run's wall time
    new_sources: int = 0
    unlisted_dirs: tuple[str, ...] = ()

    def format(self) -> str:
        rate = (f" ({self.processed / self.seconds:.2f} frames/s, {self.new_sources / self.seconds:.1f} sources/s)"
                if self.processed and self.seconds > 0 else "")
        lines = [f"{self.frames} frames: {self.processed} catalogued in this run{rate}"
                 + (f", {self.skipped} already done" if self.skipped else ""),
                 f"{self.out}: {self.sources} sources, {self.errors} unreadable frames"]
        counts = [f"{name} {n}" for name, n in self.class_counts.items() if n]
        if counts:
            lines.append("classes (this run): " + ", ".join(counts))
        if self.unlisted_dirs:
            lines.append(f"{len(self.unlisted_dirs)} folder(s) could not be listed, e.g. {self.unlisted_dirs[0]}")
        return "\n".join(lines)


def list_frames(inputs: list[Path], exclude: Path) -> tuple[Path, list[str], list[str]]:
    """The folder every input lies in and the frames' paths relative to it, sorted: a folder's
    supported images (as triage lists them) and each named file."""
    if not inputs:
        raise UsageError("give at least one frame or folder of frames")
    resolved = [Path(p).resolve() for p in inputs]
    root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in resolved]))
    found: set[str] = set()
    unlisted: list[str] = []
    for path in resolved:
        if path.is_dir():
            rels, missed = list_images(path, exclude=exclude)
            found.update((path / rel).relative_to(root).as_posix() for rel in rels)
            unlisted += missed
        else:
            found.add(path.relative_to(root).as_posix())
    return root, sorted(found), unlisted


@dataclass
class CatalogRun:
    """An opened catalogue: the journal, the frames left to do, and what earlier runs recorded."""

    root: Path
    out: Path
    journal: object
    frames: list[str]
    todo: list[tuple[str, str]]
    unlisted: list[str]
    sources: int = 0
    errors: int = 0
    processed: int = 0
    new_sources: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)

    def append(self, rows: list[list[str]]) -> None:
        """Record one or more whole frames."""
        self.journal.append(rows)  # type: ignore[attr-defined]
        self.processed += len({row[_FRAME] for row in rows})
        self._count(rows)
        for row in rows:
            if row[_STATUS] == "ok":
                self.new_sources += 1
                self.class_counts[row[14]] = self.class_counts.get(row[14], 0) + 1

    def _count(self, rows: list[list[str]]) -> None:
        self.sources += sum(row[_STATUS] == "ok" for row in rows)
        self.errors += sum(row[_STATUS] == "error" for row in rows)

    def summary(self, seconds: float) -> CatalogSummary:
        return CatalogSummary(self.root, self.out, len(self.frames), self.processed, len(self.frames) - len(self.todo),
                              self.sources, self.errors, dict(self.class_counts), seconds, self.new_sources,
                              tuple(self.unlisted))


def journal_path(out: Path) -> Path:
    """Where the rows of ``out`` are journalled: ``out`` itself for CSV and Parquet, and for a
    FITS or ECSV table (written whole at the end of each run) a CSV beside it."""
    return out if catalog_format(out) in ("csv", "parquet") else out.with_name(out.name + ".rows.csv")


def catalog_format(out: Path) -> str:
    """csv, parquet, fits or ecsv, by ``--out``'s name (an unknown suffix is a usage error)."""
    suffix = Path(out).suffix.lower()
    if suffix in (".fits", ".fit"):
        return "fits"
    if suffix == ".ecsv":
        return "ecsv"
    return results_format(out)


@contextmanager
def open_catalog(inputs: list[Path], out: Path, model: ModelInfo, options: CatalogOptions) -> Iterator[CatalogRun]:
    """List the frames and open ``out``'s journal for resume with ``model`` and ``options``."""
    labels = list(model.labels)
    root, frames, unlisted = list_frames(inputs, exclude=Path(out))
    journal_at = journal_path(Path(out))
    with open_journal(journal_at, catalog_header(labels), RESUME_HINT, options.settings(root, model),
                      resume_columns=len(SOURCE_COLUMNS[:4]), kind_of=catalog_kind, whole=whole_frames) as journal:
        run = CatalogRun(root, Path(out), journal, frames, [], unlisted)
        done = {row[_FRAME] for row in journal.rows}
        run._count(journal.rows)
        run.todo = [(rel, key) for rel in frames if (key := result_key(rel)) not in done]
        yield run


def check_options(options: CatalogOptions, batch_size: int, workers: int | None) -> None:
    if not 0.0 <= options.threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {options.threshold}")
    if batch_size < 1 or (workers is not None and workers < 1):
        raise UsageError("--batch and --workers must be at least 1")


def catalog(
    inputs: list[Path],
    predictor: Predictor,
    out: Path,
    *,
    options: CatalogOptions = CatalogOptions(),
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    timing: dict[str, float] | None = None,
) -> CatalogSummary:
    """Catalogue every frame of ``inputs`` into ``out`` on this machine, resuming what is there.

    ``workers`` frames are read and searched ahead of the model (default 2: frames are large);
    ``timing``, when given, gathers the seconds spent reading, on background, detection,
    cutouts and the model (the benchmark's split).
    """
    check_options(options, batch_size, workers)
    labels, macro_of = list(predictor.labels), dict(predictor.macro_of)
    with open_catalog(inputs, out, predictor, options) as run:
        if on_start is not None:
            on_start(len(run.todo))
        started = time.perf_counter()
        jobs = [(run.root / rel, key) for rel, key in run.todo]
        n_workers = workers or 2
        with closing(decode_ahead(jobs, Searcher(options, predictor.spec.stretch), n_workers, n_workers)) as searched:
            for item in searched:
                if timing is not None:
                    for part, seconds in item.seconds.items():
                        timing[part] = timing.get(part, 0.0) + seconds
                run.append(frame_rows(item, predictor, labels, macro_of, options, batch_size, timing))
                if progress is not None:
                    progress(1)
        elapsed = time.perf_counter() - started
    finish_table(Path(out))
    return run.summary(elapsed)


def finish_table(out: Path) -> None:
    """For a FITS or ECSV ``--out``, write the table whole from its journal (nothing for CSV / Parquet)."""
    if catalog_format(out) in ("fits", "ecsv"):
        from flare.runtime.apps.catalog_tables import write_table

        write_table(journal_path(out), out)
