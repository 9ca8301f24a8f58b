"""An append-only CSV journal that survives being killed at any moment.

Long batch jobs (triage of a survey, stage-1 and stage-2 augmentation) record each finished
item as a CSV row and skip recorded items when re-run. For that to lose nothing and
duplicate nothing whatever the moment of a kill (Ctrl-C, the OOM killer, a power cut):

* rows are appended a batch at a time, in a single ``write`` of whole lines, then ``fsync``;
* on opening, a torn last line (the only damage a kill mid-write can leave) is cut off;
* an exclusive lock stops a second run from appending the same items;
* a file that is not ours (another header, not CSV) is refused untouched;
* with ``settings``, the options and model fingerprints that make the rows are kept in a
  record beside the file (:mod:`flare.runtime.foundation.fingerprint`), and rows made with other
  settings are never resumed into.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from flare.runtime.foundation.errors import FlareError
from flare.runtime.foundation.fingerprint import check_settings, record_path

try:
    import fcntl
except ImportError:  # Windows has no flock; keeping to one run per file is then the user's job
    fcntl = None  # type: ignore[assignment]

# File names that are not valid UTF-8 (possible on POSIX) must come back byte for byte when
# the journal is read on resume, or those files would be processed twice.
_ENCODING, _ENCODING_ERRORS = "utf-8", "surrogateescape"


def check_outputs_exist(folder: Path, listed: list[str], journal: Path) -> None:
    """FlareError when files a journal lists as done are gone: resuming would count them as
    made while they are not there."""
    missing = [rel for rel in listed if rel and not (Path(folder) / rel).is_file()]
    if missing:
        raise FlareError(f"{journal} lists {len(missing)} finished files that are missing, e.g. {Path(folder) / missing[0]}; "
                         f"restore them, or re-run into another --out")


def lock_for_writing(fd: int, path: Path, kind: str) -> None:
    """Take the one-writer lock on ``fd`` (of the output ``path``, a ``file`` or ``folder``), or
    FlareError saying another run holds it. The lock goes with the descriptor, so a killed
    run never leaves it behind."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise FlareError(f"{path} is being written by another flare process right now; wait for it "
                         f"to finish, or write to another {kind}") from exc


def encode_lines(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode(_ENCODING, _ENCODING_ERRORS)


class CsvJournal:
    """An opened, locked, repaired journal: ``rows`` holds what earlier runs recorded.

    ``mismatch_hint`` completes the refusal message for a file with another header or other
    ``settings`` (say which option picks another file). ``whole``, for a job whose appends are
    groups that must be all there or not at all (one survey frame's sources): given the rows
    read, how many leading ones form whole groups. A kill in the middle of a long write can
    leave whole lines of a group without its last ones; those lines are cut off too, so the
    group is redone instead of being resumed half-made.
    """

    def __init__(self, path: Path, header: list[str], mismatch_hint: str = "pick another --out or delete it",
                 settings: Mapping[str, Any] | None = None,
                 whole: Callable[[list[list[str]]], int] | None = None) -> None:
        self.path, self.header = Path(path), list(header)
        self._hint = mismatch_hint
        self._whole = whole
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise FlareError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            self._lock()
            self.rows: list[list[str]] = self._read_and_repair()
            if settings is not None:
                check_settings(record_path(self.path), settings, str(self.path), self._hint,
                               has_results=bool(self.rows))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "CsvJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def append(self, rows: list[list[str]]) -> None:
        """Record whole rows durably: one write, then fsync."""
        if rows:
            self._write(encode_lines(rows))

    def _write(self, data: bytes) -> None:
        # One write means a kill leaves whole rows or a torn tail, which the next open cuts
        # off. The loop only matters for the short writes POSIX allows (full disk, a signal).
        assert self._fd is not None, "journal is closed"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def _lock(self) -> None:
        lock_for_writing(self._fd, self.path, "file")

    def _read_and_repair(self) -> list[list[str]]:
        """Existing rows, after cutting a torn last line and writing a missing header.

        Nothing is modified until the content is known to be ours.
        """
        with open(self._fd, "rb", closefd=False) as f:
            data = f.read()
        cut = data.rfind(b"\n") + 1
        complete, torn = data[:cut], data[cut:]
        header_line = encode_lines([self.header])
        mismatch = FlareError(f"{self.path} exists but holds other columns than this job writes; {self._hint}")
        rows: list[list[str]] = []
        if complete:
            try:
                records = list(csv.reader(io.StringIO(complete.decode(_ENCODING, _ENCODING_ERRORS), newline="")))
            except csv.Error as exc:
                raise mismatch from exc
            if records[0] != self.header:
                raise mismatch
            for number, row in enumerate(records[1:], start=2):
                if not row:
                    continue
                if len(row) != len(self.header):
                    raise FlareError(f"{self.path} row {number} has {len(row)} cells instead of {len(self.header)}; "
                                     f"the file was edited or damaged: fix that row, or {self._hint}")
                rows.append(row)
        elif torn and not header_line.startswith(torn):
            raise mismatch
        if self._whole is not None and rows and (keep := self._whole(rows)) < len(rows):
            kept = encode_lines([self.header, *rows[:keep]])
            if complete[:len(kept)] != kept:
                raise FlareError(f"{self.path} ends with an unfinished group of rows, and the rows before it "
                                 f"are not as this job writes them (the file was edited); {self._hint}")
            rows, cut = rows[:keep], len(kept)
        if cut < len(data):
            os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
        if not complete:
            self._write(header_line)
        return rows
