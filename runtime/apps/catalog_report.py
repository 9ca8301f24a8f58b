"""``flare report CATALOG``: the page for a source catalogue (``flare catalog``'s --out).

Per frame: a stretched thumbnail of the frame with every detection drawn as its ellipse in
its class's colour, the class counts, a histogram of confidence, and the least confident
sources as cutouts. The page is built like the triage report (:mod:`flare.runtime.apps.report`,
whose charts, escaping, page frame and output guard it uses): one self-contained file.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flare.runtime.apps.catalog import catalog_format, catalog_kind, is_catalog_header, journal_path
from flare.runtime.apps.report import PAGE_MARK, _CSS, _esc, bar_chart_svg, histogram_svg, results_stretch
from flare.runtime.apps.results import PARQUET_RECORD, committed_parts, require_pyarrow, text_cell
from flare.runtime.foundation.errors import FlareError, one_line
from flare.runtime.foundation.fingerprint import record_path
from flare.runtime.io.frames import read_frame
from flare.runtime.io.images import DEFAULT_MAX_PIXELS

#: Longer side of a frame's thumbnail, and of a cutout's.
FRAME_PX, CUTOUT_PX = 640, 96
#: Class colours, in label order (repeated past ten classes).
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4")


def catalog_rows(path: Path) -> tuple[list[str], list[list[str]], dict] | None:
    """A catalogue's header, rows (as text) and settings record; None when ``path`` is not one."""
    path = Path(path)
    try:
        fmt = catalog_format(path)
    except FlareError:
        return None
    if fmt == "parquet":
        record = path / PARQUET_RECORD
        try:
            header = json.loads(record.read_text(encoding="utf-8")).get("columns", [])
        except (OSError, ValueError):
            return None
        if not is_catalog_header(header):
            return None
        require_pyarrow("reading Parquet catalogues")
        import pyarrow.parquet as pq

        rows: list[list[str]] = []
        for part in committed_parts(path):
            columns = pq.read_table(part).to_pydict()
            rows += [list(r) for r in zip(*[[text_cell(n, v, catalog_kind) for v in columns[n]] for n in header])]
        return header, rows, _settings(record)
    journal = journal_path(path)
    if not journal.is_file():
        return None
    from flare.runtime.apps.catalog_tables import read_header, read_rows

    if not is_catalog_header(read_header(journal)):
        return None
    header, rows = read_rows(journal)
    return header, rows, _settings(record_path(journal))


def _settings(record: Path) -> dict:
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def render_catalog_report(source: Path, header: list[str], rows: list[list[str]], settings: dict,
                          thumbnails: int) -> tuple[str, dict[str, int]]:
    """The page and its counts (rows, sources, unreadable frames, cutouts shown)."""
    col = {name: i for i, name in enumerate(header)}
    labels = [name[2:] for name in header if name.startswith("p_")]
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    root = Path(settings["DIR"]) if isinstance(settings.get("DIR"), str) else None
    stretch = results_stretch(settings)
    by_frame: dict[str, list[list[str]]] = {}
    for row in rows:
        by_frame.setdefault(row[col["frame"]], []).append(row)
    sources = [r for r in rows if r[col["status"]] == "ok"]
    errors = [r for r in rows if r[col["status"]] == "error"]
    legend = "".join(f'<span style="color:{c}">&#9679;</span> {_esc(label)} &nbsp;' for label, c in colour.items())
    parts = [f"<header>\n<h1>Source catalogue report</h1>\n<p class=\"note\">{_esc(source)}: {len(by_frame):,} "
             f"frames, {len(sources):,} sources, {len(errors):,} unreadable frames. Frames read from "
             f"{_esc(root or 'an unrecorded folder')}.</p>\n<p>{legend}</p>\n</header>"]
    shown = 0
    for frame, frame_rows in by_frame.items():
        ok = [r for r in frame_rows if r[col["status"]] == "ok"]
        section = [f'<section class="frame" data-frame="{_esc(frame)}">\n<h2>{_esc(frame)}</h2>']
        if frame_rows[0][col["status"]] == "error":
            section.append(f'<p class="note">could not be read: {_esc(frame_rows[0][col["error"]])}</p>')
            parts.append("\n".join(section) + "\n</section>")
            continue
        picture, cutouts = None, []
        least = sorted(ok, key=lambda r: float(r[col["confidence"]]))[:thumbnails]
        if root is not None:
            try:
                loaded = read_frame(root / frame, stretch, DEFAULT_MAX_PIXELS)
                picture = _frame_picture(loaded, ok, col, colour, stretch)
                cutouts = [_cutout_picture(loaded, r, col, stretch) for r in least]
            except FlareError as exc:
                section.append(f'<p class="note">no thumbnail: {_esc(one_line(str(exc)))}</p>')
        if picture is not None:
            section.append(f'<img class="frame" src="{picture}" alt="{_esc(frame)}" style="max-width:100%">')
        counts = Counter(r[col["fine_class"]] for r in ok)
        section.append(f'<h3>Classes ({len(ok):,} sources)</h3>'
                       + bar_chart_svg([(label, counts.get(label, 0)) for label in labels]))
        if ok:
            threshold = settings.get("--threshold")
            section.append("<h3>Confidence</h3>" + histogram_svg(
                np.array([float(r[col["confidence"]]) for r in ok]),
                float(threshold) if isinstance(threshold, (int, float)) else None))
        if cutouts:
            shown += len(cutouts)
            figures = "".join(
                f'<figure class="thumb"><img src="{uri}" alt="source {_esc(r[col["source_id"]])}"><figcaption>'
                f'#{_esc(r[col["source_id"]])} {_esc(r[col["fine_class"]])} · {float(r[col["confidence"]]):.3f}'
                f"</figcaption></figure>" for uri, r in zip(cutouts, least))
            section.append(f'<h3>Least confident</h3><div class="grid">{figures}</div>')
        parts.append("\n".join(section) + "\n</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'style-src \'unsafe-inline\'">\n{PAGE_MARK}\n<title>flare catalogue report: {_esc(source.name)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")
    return page, {"rows": len(rows), "sources": len(sources), "errors": len(errors), "shown": shown}


def _uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _frame_picture(frame, ok: list[list[str]], col: dict[str, int], colour: dict[str, str], stretch) -> str:
    """The whole frame stretched, scaled to :data:`FRAME_PX`, each source's ellipse (3 a by 3 b) drawn."""
    height, width = frame.pixels.shape[-2:] if frame.fits else frame.pixels.shape[:2]
    image = Image.fromarray(frame.cutout((0, width, 0, height), stretch))
    scale = min(1.0, FRAME_PX / max(width, height))
    image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    t = np.linspace(0.0, 2 * np.pi, 24)
    for r in ok:
        x, y, a, b = (float(r[col[k]]) for k in ("x", "y", "a", "b"))
        theta = np.radians(float(r[col["theta"]]))
        ex = x + 3 * a * np.cos(t) * np.cos(theta) - 3 * b * np.sin(t) * np.sin(theta)
        ey = y + 3 * a * np.cos(t) * np.sin(theta) + 3 * b * np.sin(t) * np.cos(theta)
        draw.line([((u + 0.5) * scale, (v + 0.5) * scale) for u, v in zip(ex, ey)],
                  fill=colour.get(r[col["fine_class"]], "#ffffff"), width=1)
    return _uri(image)


def _cutout_picture(frame, row: list[str], col: dict[str, int], stretch) -> str:
    """A source's surroundings (8 semi-major axes square, at least 16 px), scaled to :data:`CUTOUT_PX`."""
    height, width = frame.pixels.shape[-2:] if frame.fits else frame.pixels.shape[:2]
    x, y, a = (float(row[col[k]]) for k in ("x", "y", "a"))
    half = max(8, int(4 * a))
    box = (max(0, round(x) - half), min(width, round(x) + half), max(0, round(y) - half), min(height, round(y) + half))
    image = Image.fromarray(frame.cutout(box, stretch))
    return _uri(image.resize((CUTOUT_PX, CUTOUT_PX), Image.Resampling.NEAREST))
