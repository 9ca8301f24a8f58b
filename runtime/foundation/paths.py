"""Checks on the paths a command was given, made before any work so a mistake costs nothing.

Commands do not call these one by one: they declare each path with the click types in
:mod:`flare.runtime.foundation.options` (``InputPath``, ``OutputPath``), and ``FlareCommand`` runs these checks
once the command line is parsed, before the command starts. A path that cannot work is then
one line naming it, before an hour of training finds out. The rules:

* an input must exist and be of the declared kind (file or folder) and readable;
* an output must be creatable: no path component that is a file, no name over the file
  system's limit, a folder we may write in; an existing output of the wrong kind is refused;
* an output folder that already holds files must have been made by the same step (it holds
  that step's marker file), so a command never writes over, or deletes, a user's files;
* an output is never an input, nor inside one, nor around one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal

from flare.runtime.foundation.errors import FlareError, UsageError

Kind = Literal["file", "dir", "any"]

def os_error_line(exc: OSError) -> str:
    """An OS error as one line: the path(s) it concerns and the system's reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def check_input(path: Path, kind: Kind, what: str) -> Path:
    """``path`` if it exists as ``kind`` and can be read; FlareError naming ``what`` otherwise."""
    path = Path(path)
    if not path.exists():
        hint = " (a broken symbolic link)" if path.is_symlink() else ""
        raise FlareError(f"{what} {path} does not exist{hint}; check the path")
    if kind == "dir" and not path.is_dir():
        raise FlareError(f"{what} {path} is a file; give a folder")
    if kind == "file" and path.is_dir():
        raise FlareError(f"{what} {path} is a folder; give a file")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise FlareError(f"{what} {path} cannot be read: permission denied")
    return path


def check_output(path: Path, kind: Kind, what: str, made_by: str | None = None) -> Path:
    """``path`` if this command can create or update it; FlareError naming ``what`` otherwise.

    ``made_by`` says how the step recognises its own output. For a folder it is the marker file
    (relative to the folder) that the step leaves in it: an existing folder that holds files but
    no marker belongs to someone else and is refused rather than written into. For a file it is
    a mark the step writes near the start of every file it makes: an existing file without it
    (an input's record, a Parquet part, a user's image) is refused rather than replaced.
    """
    path = Path(path)
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise FlareError(f"{what} {path} is a file; give a folder to write into")
        if kind == "file" and path.is_dir():
            raise FlareError(f"{what} {path} is a folder; give a file name, e.g. {path / 'results.csv'}")
        if path.is_dir() and made_by is not None and any(path.iterdir()) and not (path / made_by).exists():
            raise FlareError(f"{what} {path} already holds files that this step did not write (no {made_by}); "
                             f"give a new or empty folder")
        if path.is_file() and made_by is not None and not _carries(path, made_by):
            raise FlareError(f"{what} {path} is a file this step did not write (it does not carry {made_by!r}); "
                             "give a new file name: flare never writes over a file it did not make")
        writable = path if path.is_dir() else path.parent
    else:
        writable = _creatable_from(path, what)
    if not os.access(writable, os.W_OK | os.X_OK):
        raise FlareError(f"{what} {path} cannot be written: no write permission in {writable}")
    if path.exists() and path.is_file() and not os.access(path, os.W_OK):
        raise FlareError(f"{what} {path} cannot be written: the file is read-only")
    return path


def _carries(path: Path, mark: str, head: int = 1 << 16) -> bool:
    """Whether the first ``head`` bytes of ``path`` hold ``mark`` (an unreadable file does not)."""
    try:
        with open(path, "rb") as f:
            return mark.encode("utf-8") in f.read(head)
    except OSError:
        return False


def _creatable_from(path: Path, what: str) -> Path:
    """The nearest existing ancestor of a missing ``path``, checked to be a folder that can
    hold the missing names; FlareError otherwise."""
    missing: list[str] = []
    ancestor = path.absolute()
    while not ancestor.exists():
        missing.append(ancestor.name)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FlareError(f"{what} {path} cannot be created: {ancestor} is a file, not a folder")
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise FlareError(f"{what} {path} cannot be created: the name {name[:40]}... is longer than the "
                             f"{name_max} bytes this file system allows")
    return ancestor


def check_apart(output: tuple[Path, str], inputs: Iterable[tuple[Path, str]], output_is_file: bool = False) -> None:
    """UsageError when the output is one of the inputs, lies inside one, or contains one.

    Writing there would change what is being read (a merge deleting a stage-1 image, a
    training run's files scanned as data); refusing before any work keeps inputs whole. A
    new output *file* may lie inside an input folder (a results CSV beside the survey it
    describes): the commands read only image files, and triage leaves its own CSV out.
    """
    out_path, out_what = output
    out = Path(out_path).resolve()
    for in_path, in_what in inputs:
        src = Path(in_path).resolve()
        if out == src:
            relation = "is"
        elif src in out.parents and not output_is_file:
            relation = "lies inside"
        elif out in src.parents:
            relation = "contains"
        else:
            continue
        raise UsageError(f"{out_what} {out_path} {relation} {in_what} {in_path}; write the output somewhere "
                         f"that is not an input")
