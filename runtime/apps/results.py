"""Triage results on disk: a CSV file or a Parquet folder, chosen by ``--out``'s name.

Both formats hold the same rows (:func:`flare.runtime.apps.triage.csv_header` names the columns)
and resume the same way; the engines hand rows over as the CSV's text cells, and Parquet
stores them typed (floats as doubles, ``flagged`` as a boolean, empty cells as nulls), so a
value reads the same in either file.

A Parquet result is a *folder* of part files, the layout Spark, Ray and DuckDB write and
``pandas.read_parquet(folder)`` reads whole. That is what makes it resumable and safe to
kill: a part is written under a hidden name and renamed into place, so every visible part is
complete and a kill loses at most the rows not yet committed (:attr:`ParquetJournal.COMMIT_SECONDS`).
Hidden and ``_``-prefixed names are skipped by Parquet readers, so the lock and the settings
record (``_flare.json``) live inside the folder without showing up as data.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np

from flare.runtime.foundation.atomic import fsync_path
from flare.runtime.foundation.errors import FlareError, MissingExtraError, UsageError
from flare.runtime.foundation.fingerprint import check_settings, record_path
from flare.runtime.foundation.journal import CsvJournal, lock_for_writing

Format = Literal["csv", "parquet"]

#: ``--out`` names that pick each format; anything else is a usage error that lists these.
SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet"}

#: The columns before the per-class probabilities, in order (both formats, both engines).
FIXED_COLUMNS: tuple[str, ...] = (
    "path", "fine_class", "macro_class", "confidence", "flagged", "status", "error",
)

#: Columns that are not text: read as numbers (or a boolean) in Parquet and in reports.
_BOOLEAN = "flagged"
_TEXT = frozenset({"path", "fine_class", "macro_class", "status", "error"})

Kind = Literal["text", "bool", "int", "float"]
#: How a results table types its columns in Parquet: column name -> kind. Triage's is
#: :func:`triage_kind`; the source catalogue (:mod:`flare.runtime.apps.catalog`) has its own.
KindOf = Callable[[str], Kind]


def triage_kind(name: str) -> Kind:
    """Triage's columns: the names in ``_TEXT`` are text, ``flagged`` is a boolean, the rest floats."""
    return "text" if name in _TEXT else "bool" if name == _BOOLEAN else "float"

#: The settings record inside a Parquet results folder; also marks the folder as ours.
PARQUET_RECORD = "_flare.json"
_PART = re.compile(r"part-(\d{6})\.parquet")


def committed_parts(folder: Path) -> list[Path]:
    """The part files of a Parquet results folder in commit order; FlareError for a stray one."""
    found = sorted(folder.glob("part-*"))
    stray = [p for p in found if not _PART.fullmatch(p.name)]
    if stray:
        raise FlareError(f"{stray[0]} is not a part triage wrote (those are part-NNNNNN.parquet); move it out of "
                         f"{folder}")
    return found


def results_format(out: Path) -> Format:
    """The format ``out`` asks for: by suffix, and a folder (existing, or a name without a
    suffix) means Parquet. An unknown suffix is refused rather than guessed."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if out.is_dir() or not suffix:
        return "parquet"
    raise UsageError(f"--out {out}: unknown results format {suffix!r}; name a .csv file, or a .parquet "
                     f"(or suffix-less) folder for Parquet")


def is_text(column: str) -> bool:
    return column in _TEXT


def require_pyarrow(what: str = "Parquet results") -> Any:
    """pyarrow, or a one-line error naming the extra that installs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the submodule is what we use
    except ImportError as exc:
        raise MissingExtraError(what, "parquet") from exc
    return pyarrow


def arrow_schema(header: list[str], kind_of: KindOf = triage_kind) -> Any:
    """The typed Parquet schema of a results header."""
    pa = require_pyarrow()
    types = {"text": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, types[kind_of(name)]) for name in header])


def typed_columns(header: list[str], rows: list[list[str]], kind_of: KindOf = triage_kind) -> dict[str, list[Any]]:
    """Text rows as typed columns; an empty cell is a null (``None``)."""
    columns: dict[str, list[Any]] = {}
    for i, name in enumerate(header):
        cells = [row[i] for row in rows]
        kind = kind_of(name)
        if kind == "text":
            columns[name] = [cell or None for cell in cells]
        elif kind == "bool":
            columns[name] = [None if cell == "" else cell == "1" for cell in cells]
        elif kind == "int":
            columns[name] = [None if cell == "" else int(cell) for cell in cells]
        else:
            columns[name] = [None if cell == "" else float(cell) for cell in cells]
    return columns


def text_cell(name: str, value: Any, kind_of: KindOf = triage_kind) -> str:
    """The CSV text of a typed value (the inverse of :func:`typed_columns`)."""
    if value is None:
        return ""
    kind = kind_of(name)
    if kind == "bool":
        return "1" if value else "0"
    if kind in ("text", "int"):
        return str(value)
    return f"{value:.6f}"


def open_journal(out: Path, header: list[str], hint: str, settings: Mapping[str, Any],
                 resume_columns: int | None = None, *, kind_of: KindOf = triage_kind,
                 whole: Callable[[list[list[str]]], int] | None = None) -> CsvJournal | ParquetJournal:
    """The results journal ``out`` names, opened for resume (see :func:`results_format`).

    ``resume_columns``: how many leading columns a resume needs of each earlier row; a
    Parquet journal reads only those, which keeps a resume of millions of rows in memory.
    ``kind_of`` types the Parquet columns. ``whole``: for rows appended in groups that must be
    all there or not at all (a frame's sources), how many leading rows of a CSV form whole
    groups (:class:`CsvJournal`); a Parquet part always holds whole appends.
    """
    if results_format(out) == "csv":
        return CsvJournal(out, header, hint, settings=settings, whole=whole)
    return ParquetJournal(out, header, hint, settings=settings, resume_columns=resume_columns, kind_of=kind_of)


def result_key(rel: str) -> str:
    """A file's path as written in the results: one line (the CSV's torn-line repair needs
    it, so the rare line breaks of a POSIX name are escaped) and valid UTF-8 (see
    :func:`utf8_text`), with backslashes doubled so no two names share a key. Resume
    compares these."""
    return utf8_text(rel.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n"))


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: Parquet strings must be, and a POSIX file name need not be,
    so bytes that are not UTF-8 (kept by Python as surrogates) are written ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ParquetJournal:
    """A Parquet results folder opened for appending: ``rows`` holds what earlier runs wrote
    (their first ``resume_columns`` cells; all of them by default).

    The same contract as :class:`flare.runtime.foundation.journal.CsvJournal` (append whole rows, resume
    from ``rows``, refuse other columns or settings, one writer at a time), with commits in
    parts: rows are buffered and written as one part file when :attr:`COMMIT_ROWS` have
    gathered or :attr:`COMMIT_SECONDS` have passed, and on close (Ctrl-C included). Only a
    hard kill loses the buffer, which a re-run redoes.
    """

    COMMIT_ROWS = 8192
    COMMIT_SECONDS = 10.0

    def __init__(self, path: Path, header: list[str], mismatch_hint: str = "pick another --out or delete it",
                 settings: Mapping[str, Any] | None = None, resume_columns: int | None = None,
                 kind_of: KindOf = triage_kind) -> None:
        self.path, self.header, self._hint = Path(path), list(header), mismatch_hint
        self._resume_columns = self.header[:resume_columns] if resume_columns else self.header
        self._kind_of = kind_of
        self._pa = require_pyarrow()
        self._schema = arrow_schema(self.header, kind_of)
        if self.path.is_file():
            raise UsageError(f"--out {self.path} is a file; Parquet results are a folder of parts, so name a new "
                             f"folder (or write a .csv)")
        if self.path.is_dir() and any(not p.name.startswith(".") for p in self.path.iterdir()) \
                and not (self.path / PARQUET_RECORD).is_file():
            raise FlareError(f"{self.path} already holds files that triage did not write (no {PARQUET_RECORD}); "
                             f"give a new or empty folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._buffer: list[list[str]] = []
        self._last_commit = time.monotonic()
        self._lock_fd: int | None = os.open(self.path / ".flare.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            lock_for_writing(self._lock_fd, self.path, "folder")
            for stale in self.path.glob(".part-*"):  # a kill mid-write left it; never visible as data
                stale.unlink()
            parts = self.parts()
            self.rows = [row for part in parts for row in self._read_part(part)]
            self._next = 1 + max((int(_PART.fullmatch(p.name)[1]) for p in parts), default=0)
            if settings is not None:
                check_settings(self.path / PARQUET_RECORD, {"columns": self.header, **settings}, str(self.path),
                               self._hint, has_results=bool(self.rows))
            elif not (self.path / PARQUET_RECORD).is_file():
                check_settings(self.path / PARQUET_RECORD, {"columns": self.header}, str(self.path), self._hint,
                               has_results=bool(self.rows))
        except BaseException:
            self._unlock()
            raise

    def __enter__(self) -> ParquetJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def parts(self) -> list[Path]:
        """The committed part files, in the order they were written. Any other ``part-*`` file
        (a copy, another tool's part) is refused: reading it would count its rows twice."""
        return committed_parts(self.path)

    def append(self, rows: list[list[str]]) -> None:
        """Buffer whole rows; commit a part when enough have gathered or enough time has passed."""
        self._buffer.extend(rows)
        if len(self._buffer) >= self.COMMIT_ROWS or time.monotonic() - self._last_commit >= self.COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        """Write the buffered rows as one part: to a hidden name, flushed, then renamed into place."""
        self._last_commit = time.monotonic()
        if not self._buffer:
            return
        import pyarrow.parquet as pq

        table = self._pa.Table.from_pydict(typed_columns(self.header, self._buffer, self._kind_of),
                                           schema=self._schema)
        name = f"part-{self._next:06d}.parquet"
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        fsync_path(tmp)
        os.replace(tmp, self.path / name)
        fsync_path(self.path)
        self._buffer.clear()  # before the count: an interrupt in between must not write these rows again
        self._next += 1

    def close(self) -> None:
        try:
            if self._lock_fd is not None:
                self.commit()
        finally:
            self._unlock()

    def _read_part(self, part: Path) -> list[list[str]]:
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(part).names
            if names != self.header:
                raise FlareError(f"{self.path} holds other columns than this job writes; {self._hint}")
            columns = pq.read_table(part, columns=self._resume_columns).to_pydict()
        except (OSError, self._pa.ArrowException) as exc:
            raise FlareError(f"{part} cannot be read ({exc}); move it out of {self.path} and re-run to redo its "
                             f"rows") from exc
        cells = [[text_cell(name, value, self._kind_of) for value in columns[name]] for name in self._resume_columns]
        return [list(row) for row in zip(*cells)]

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


# --- reading results back (reports, tests, the Ray engine's comparison) ----------------------


@dataclass
class Results:
    """The columns of a results file that summaries need, as arrays (cheap for millions of rows).

    ``root`` is the folder that was triaged, from the results' settings record (None when the
    record is missing): the report reads thumbnails and ground-truth folders from it.
    """

    source: Path
    labels: list[str]
    path: np.ndarray  #: object array of str
    fine_class: np.ndarray
    macro_class: np.ndarray
    confidence: np.ndarray  #: float64, NaN for error rows
    flagged: np.ndarray  #: bool
    status: np.ndarray
    error: np.ndarray
    root: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.path)




def load_results(path: Path) -> Results:
    """Read a triage results CSV or Parquet folder (read-only: a run may be writing it)."""
    path = Path(path)
    if not path.exists():
        raise FlareError(f"{path} does not exist; give the --out of a 'flare triage' run")
    if path.is_dir():
        header, columns = _read_parquet_columns(path)
        record = path / PARQUET_RECORD
    elif path.suffix.lower() == ".parquet":
        raise FlareError(f"{path} is a single Parquet file; flare reads the results folders 'flare triage' writes")
    else:
        header, columns = _read_csv_columns(path)
        record = record_path(path)
    settings = _read_record(record)
    labels = [name[2:] for name in header if name.startswith("p_")]
    root = Path(settings["DIR"]) if isinstance(settings.get("DIR"), str) else None
    try:
        confidence = np.array([np.nan if c is None or c == "" else float(c) for c in columns["confidence"]],
                              dtype=np.float64)
    except ValueError as exc:
        raise FlareError(f"{path} has a confidence that is not a number ({exc}); it was edited or damaged: "
                         f"fix it, or triage again into another --out") from exc
    given = np.array([not (c is None or c == "") for c in columns["confidence"]], dtype=bool)
    damaged = np.flatnonzero(given & ~((confidence >= 0.0) & (confidence <= 1.0)))  # NaN fails both
    if damaged.size:
        row = int(damaged[0])
        raise FlareError(f"{path} has a confidence of {columns['confidence'][row]!r} (row {row + 1}), not a number "
                         "in [0, 1]; it was edited or damaged: fix it, or triage again into another --out")
    flagged = np.array([c is True or c == "1" for c in columns["flagged"]], dtype=bool)
    text = {name: np.array(["" if c is None else str(c) for c in columns[name]], dtype=object)
            for name in ("path", "fine_class", "macro_class", "status", "error")}
    return Results(path, labels, confidence=confidence, flagged=flagged, root=root, settings=settings, **text)


def _read_record(record: Path) -> dict[str, Any]:
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _read_csv_columns(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    import csv

    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or list(header[:len(FIXED_COLUMNS)]) != list(FIXED_COLUMNS):
            raise FlareError(f"{path} is not a triage results file (its first line is not the triage columns); "
                             f"give the --out of a 'flare triage' run")
        columns: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
        for row in reader:
            if len(row) != len(header):
                continue  # a torn last line of a run being written; triage repairs it on resume
            for i, name in enumerate(FIXED_COLUMNS):
                columns[name].append(row[i])
    return header, columns


def _read_parquet_columns(folder: Path) -> tuple[list[str], dict[str, list[Any]]]:
    pa = require_pyarrow("reading Parquet results")
    import pyarrow.parquet as pq

    if not (folder / PARQUET_RECORD).is_file():
        raise FlareError(f"{folder} is not a triage results folder (no {PARQUET_RECORD}); give the --out of a "
                         f"'flare triage' run")
    header: list[str] = [str(c) for c in _read_record(folder / PARQUET_RECORD).get("columns", [])]
    columns: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
    for part in committed_parts(folder):
        try:
            table = pq.read_table(part, columns=list(FIXED_COLUMNS))
        except (OSError, pa.ArrowException) as exc:
            raise FlareError(f"{part} cannot be read ({exc}); move it aside and re-run triage to redo its rows") from exc
        for name, values in table.to_pydict().items():
            columns[name].extend(values)
    return header, columns
