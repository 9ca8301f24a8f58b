"""Catalogue tables for astronomers' tools: a FITS binary table or an ECSV file, with units.

Neither format can be appended to safely, so a ``--out`` naming one is journalled as a CSV
beside it (``<out>.rows.csv``, resumed like any catalogue) and the table is written whole,
atomically, at the end of every run. Every table carries :data:`MARK` (a FITS ``CREATOR``
card, an ECSV meta entry) so that ``--out`` never replaces a file flare did not make.

A FITS table's RA/Dec are in degrees in the frames' own celestial frame: its header holds
``RADESYS`` (and ``EQUINOX``) when every frame agrees, and a second table, ``FRAMES``, holds
each frame's full celestial WCS header, the reference its positions were computed in.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from flare.runtime.apps.catalog import UNITS, catalog_kind
from flare.runtime.foundation.atomic import write_atomically
from flare.runtime.foundation.errors import FlareError, ImageDecodeError
from flare.runtime.foundation.fingerprint import record_path

#: What every table this writes carries near its start (see :func:`flare.runtime.foundation.paths.check_output`).
MARK = "flare catalog"


def read_header(path: Path) -> list[str]:
    """The first line of a CSV as its header, or [] for a file that is no CSV (a binary file's
    "line" may be megabytes: only its start is read)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return next(csv.reader([f.readline(65536)]), [])
    except (OSError, csv.Error):
        return []


def read_rows(journal: Path) -> tuple[list[str], list[list[str]]]:
    """A catalogue CSV's header and rows."""
    with open(journal, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        return header, [row for row in reader if len(row) == len(header)]


def astropy_table(header: list[str], rows: list[list[str]]) -> Any:
    """The rows as an astropy Table: typed, nulls masked, units on the measured columns."""
    from astropy.table import MaskedColumn, Table

    table = Table()
    for i, name in enumerate(header):
        cells = [row[i] for row in rows]
        missing = np.array([cell == "" for cell in cells], dtype=bool)
        kind = catalog_kind(name)
        if kind == "text":
            values = np.array(cells, dtype=str) if cells else np.zeros(0, dtype="U1")
        elif kind == "int":
            values = np.array([0 if m else int(c) for c, m in zip(cells, missing)], dtype=np.int64)
        elif kind == "bool":
            values = np.array([c == "1" for c in cells], dtype=bool)
        else:
            values = np.array([np.nan if m else float(c) for c, m in zip(cells, missing)], dtype=np.float64)
        unit = UNITS.get(name)
        if kind in ("int", "bool") and missing.any():
            table[name] = MaskedColumn(values, mask=missing, unit=unit)
        else:
            table.add_column(values, name=name)
            table[name].unit = unit
    return table


def frame_references(root: Path | None, frames: list[str]) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """Each frame's celestial WCS header (frame, RADESYS, header text), and the RADESYS /
    EQUINOX cards every frame agrees on."""
    from flare.runtime.io.frames import celestial_wcs
    from flare.runtime.io.images import is_fits

    found: list[tuple[str, str, str]] = []
    agreed: dict[str, set[str]] = {"RADESYS": set(), "EQUINOX": set()}
    if root is None:
        return found, {}
    from astropy.io import fits

    for frame in frames:
        path = root / frame
        if not is_fits(path):
            continue
        try:
            wcs = celestial_wcs(fits.getheader(path))
        except (OSError, ValueError, IndexError, ImageDecodeError):
            continue
        if wcs is None:
            continue
        radesys = str(wcs.wcs.radesys or "")
        found.append((frame, radesys, wcs.to_header_string(relax=True)))
        agreed["RADESYS"].add(radesys)
        agreed["EQUINOX"].add(f"{wcs.wcs.equinox}")
    cards = {key: next(iter(values)) for key, values in agreed.items() if len(values) == 1 and next(iter(values))
             not in ("", "nan")}
    return found, cards


def write_table(journal: Path, out: Path) -> Path:
    """Write the catalogue in ``journal`` to ``out`` (FITS or ECSV by its suffix), atomically."""
    header, rows = read_rows(journal)
    table = astropy_table(header, rows)
    try:
        settings = json.loads(record_path(journal).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        settings = {}
    root = Path(settings["DIR"]) if isinstance(settings.get("DIR"), str) else None
    frames = list(dict.fromkeys(row[0] for row in rows if row[2] == "ok" and row[6] != ""))
    references, cards = frame_references(root, frames)
    if out.suffix.lower() == ".ecsv":
        table.meta.update({"creator": MARK, "frames_dir": str(root or ""), **{k.lower(): v for k, v in cards.items()}})
        return write_atomically(out, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True))
    from astropy.io import fits

    hdu = fits.table_to_hdu(table)
    hdu.name = "CATALOG"
    hdu.header["CREATOR"] = (MARK, "flare catalog wrote this table")
    for key, value in cards.items():
        hdu.header[key] = (float(value) if key == "EQUINOX" else value, "of every frame's WCS: ra, dec are in it")
    hdu.header["COMMENT"] = "x, y: 0-based pixel centroids (the first pixel's centre is 0, 0); ra, dec from each " \
                            "frame's WCS (the FRAMES table)"
    frames_hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="frame", format=f"{max([1] + [len(f.encode()) for f, _, _ in references])}A",
                    array=np.array([f for f, _, _ in references], dtype=str)),
        fits.Column(name="radesys", format="8A", array=np.array([r for _, r, _ in references], dtype=str)),
        fits.Column(name="wcs_header", format=f"{max([1] + [len(h) for _, _, h in references])}A",
                    array=np.array([h for _, _, h in references], dtype=str)),
    ], name="FRAMES")
    primary = fits.PrimaryHDU()
    primary.header["CREATOR"] = (MARK, "flare catalog wrote this file")
    try:
        return write_atomically(out, lambda tmp: fits.HDUList([primary, hdu, frames_hdu]).writeto(tmp, overwrite=True))
    except (ValueError, TypeError) as exc:
        raise FlareError(f"{out} could not be written as FITS ({exc}); write a .csv or .parquet catalogue") from exc
