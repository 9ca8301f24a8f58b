"""``flare report``: one self-contained HTML page that says what a triage run found.

A results file of 100k rows is not something a person reads; the page answers the questions
asked of it instead: how many images of each class, how sure the model was, which images need
a look (the least confident first, as thumbnails), which files could not be read, and, when
the survey is sorted into class folders, how often the model agreed with them.

The page must travel (mailed, attached to a ticket, opened offline on an observatory
network), so it is one file: charts are inline SVG drawn here, thumbnails are base64 data
URIs, the style sheet is inline and there is no script. A Content-Security-Policy in the page
forbids loading anything else, so a browser refuses (and logs) any outside resource instead
of fetching it. Everything but the thumbnail sample is numpy over the result columns, so a
report of tens of thousands of rows takes about as long as reading the file; only the
bounded sample of thumbnails decodes images.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np
from PIL import Image

from flare.runtime.apps.results import Results, load_results, utf8_text
from flare.runtime.core.preprocess import PreprocessSpec, StretchSpec
from flare.runtime.core.taxonomy import MACRO_CLASSES, MACRO_OF
from flare.runtime.foundation.atomic import write_text
from flare.runtime.foundation.errors import FlareError, UsageError, one_line
from flare.runtime.io.images import DEFAULT_MAX_PIXELS, load_rgb

#: Thumbnails drawn by default: enough to work through in one sitting, small enough (~4 kB
#: each) that the page stays a few MB at most.
DEFAULT_THUMBNAILS = 200
#: Error rows listed: a folder where every file fails says so in the first few hundred.
MAX_ERROR_ROWS = 500
#: Longer side of a thumbnail in pixels.
THUMBNAIL_PX = 96
#: What every page this command writes says it was made by: an existing --out file without it is not
#: ours and is never written over (a results record, a Parquet part, a user's image).
PAGE_MARK = '<meta name="generator" content="flare report">'
#: Bins of the confidence histogram over [0, 1].
HISTOGRAM_BINS = 20

_BLUE, _ORANGE, _RED = "#2f6db5", "#e08a1e", "#c62828"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2733;
 background:#fff;margin:0;padding:24px 32px;line-height:1.4}
main{max-width:1200px;margin:0 auto}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid #d5dbe1;padding-bottom:4px}
h3{font-size:1.05em;margin:16px 0 6px}
.note{color:#52606d;margin:4px 0 10px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.facts dt{color:#52606d}dl.facts dd{margin:0;overflow-wrap:anywhere}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.tile{border:1px solid #d5dbe1;border-radius:6px;padding:8px 14px;min-width:120px}
.tile b{display:block;font-size:1.5em}
.pair{display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}
th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.confusion td{text-align:right;min-width:2.5em;font-variant-numeric:tabular-nums}
table.confusion td.diag{outline:2px solid #1d2733;outline-offset:-2px}
td.path{overflow-wrap:anywhere;max-width:520px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px}
figure{margin:0;border:1px solid #d5dbe1;border-radius:4px;padding:4px;font-size:.75em;background:#fafbfc}
figure img,.placeholder{display:block;margin:0 auto 4px;width:96px;height:96px;object-fit:contain;
 image-rendering:auto;background:#000}
.placeholder{background:repeating-linear-gradient(45deg,#eceff3,#eceff3 6px,#dfe3e8 6px,#dfe3e8 12px);
 color:#52606d;display:flex;align-items:center;justify-content:center;text-align:center;font-size:.9em}
figcaption{overflow-wrap:anywhere}
svg text{font-family:inherit}
"""


@dataclass(frozen=True)
class ReportSummary:
    """What the page holds, for the command's one-line summary and for tests."""

    out: Path
    rows: int
    ok: int
    errors: int
    flagged: int
    shown: int  #: flagged rows shown (as thumbnails, or listed when there are no images)
    with_truth: int  #: classified rows whose path names a ground-truth class folder
    fine_accuracy: float | None
    macro_accuracy: float | None

    def format(self) -> str:
        """One line: the counts, and the accuracy when the survey had class folders."""
        truth = (f"fine accuracy {self.fine_accuracy:.1%}, macro {self.macro_accuracy:.1%} over {self.with_truth:,} "
                 f"rows in ground-truth folders" if self.fine_accuracy is not None and self.macro_accuracy is not None
                 else "no ground-truth folders")
        return (f"{self.rows:,} rows: {self.ok:,} classified, {self.errors:,} unreadable, {self.flagged:,} flagged "
                f"for review ({self.shown:,} shown); {truth}")


def write_report(results_path: Path, out: Path, *, images: Path | None = None,
                 thumbnails: int = DEFAULT_THUMBNAILS) -> ReportSummary:
    """Read a triage results file and write its report to ``out`` (atomically: a page that
    is there is whole). ``images`` overrides the triaged folder the results record."""
    from flare.runtime.apps.catalog_report import catalog_rows, render_catalog_report

    found = catalog_rows(Path(results_path))
    if found is not None:  # a source catalogue ('flare catalog'), one section per frame
        if thumbnails < 1:
            raise UsageError(f"--thumbnails must be at least 1, got {thumbnails}")
        page, counts = render_catalog_report(Path(results_path), *found, thumbnails=thumbnails)
        write_text(out, page)
        return ReportSummary(out=Path(out), rows=counts["rows"], ok=counts["sources"], errors=counts["errors"],
                             flagged=0, shown=counts["shown"], with_truth=0, fine_accuracy=None, macro_accuracy=None)
    results = read_results(results_path)
    page, summary = render_report(results, out, images=images, thumbnails=thumbnails)
    write_text(out, page)
    return summary


def read_results(path: Path) -> Results:
    """:func:`load_results`, with what the csv module raises on a file that is not a CSV at
    all (a binary file's huge "field") turned into the same one-line error."""
    try:
        return load_results(Path(path))
    except (csv.Error, UnicodeError) as exc:
        raise FlareError(f"{path} is not a triage results file ({one_line(str(exc))}); give the --out of a "
                         f"'flare triage' run") from exc


def render_report(results: Results, out: Path, *, images: Path | None = None,
                  thumbnails: int = DEFAULT_THUMBNAILS) -> tuple[str, ReportSummary]:
    """The HTML page for ``results`` and its summary (``out`` only goes into the summary)."""
    if thumbnails < 1:
        raise UsageError(f"--thumbnails must be at least 1, got {thumbnails}")
    ok = results.status == "ok"
    folder, folder_note = image_folder(results, images)
    truth = truth_labels(results.path, results.labels)
    flagged_idx = least_confident_flagged(results)
    shown = flagged_idx[:thumbnails]
    truth_section, accuracy = _truth_section(results, truth)
    sections = [
        _header_section(results, folder, folder_note),
        _counts_section(results),
        _confidence_section(results),
        _flagged_section(results, flagged_idx, shown, folder, folder_note),
        _errors_section(results),
        truth_section,
    ]
    title = f"flare triage report: {results.source.name}"
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'style-src \'unsafe-inline\'">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'{PAGE_MARK}\n'
            f'<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n'
            + "\n".join(sections) + "\n</main>\n</body>\n</html>\n")
    summary = ReportSummary(out=Path(out), rows=len(results), ok=int(ok.sum()), errors=int((~ok).sum()),
                            flagged=len(flagged_idx), shown=len(shown), with_truth=accuracy[0],
                            fine_accuracy=accuracy[1], macro_accuracy=accuracy[2])
    return page, summary


# --- what the page is built from ----------------------------------------------------------


def image_folder(results: Results, images: Path | None) -> tuple[Path | None, str]:
    """Where the images are (``--images``, else the folder the results record), or None and
    a sentence for the page saying why there are no thumbnails."""
    if images is not None:
        return Path(images), ""
    if results.root is None:
        return None, ("the results do not record which folder was triaged, so there are no thumbnails; "
                      "give --images DIR to show them")
    if not results.root.is_dir():
        return None, (f"the triaged folder {results.root} is not on this machine, so there are no thumbnails; "
                      f"give --images DIR to show them")
    return results.root, ""


def least_confident_flagged(results: Results) -> np.ndarray:
    """Indices of the flagged rows, least confident first (ties keep file order): the order
    in which a reviewer should look at them."""
    idx = np.flatnonzero(results.flagged)
    conf = np.where(np.isnan(results.confidence[idx]), -1.0, results.confidence[idx])
    return idx[np.argsort(conf, kind="stable")]


def class_counts(results: Results) -> tuple[dict[str, int], dict[str, int]]:
    """Classified rows per fine class (in the model's label order, then any other name the
    rows carry) and per macro class (FLARE's order, then the rest sorted)."""
    ok = results.status == "ok"
    fine = Counter(results.fine_class[ok].tolist())
    macro = Counter(results.macro_class[ok].tolist())
    fine_names = list(results.labels) + sorted(set(fine) - set(results.labels))
    macro_known = [m for m in MACRO_CLASSES if m in macro or m in _macro_of_labels(results).values()]
    macro_names = macro_known + sorted(set(macro) - set(macro_known))
    return {n: fine.get(n, 0) for n in fine_names}, {n: macro.get(n, 0) for n in macro_names}


def normalise_class(name: str) -> str:
    """A class or folder name compared loosely: case, ``_`` and ``-`` do not matter, so the
    folder ``black_hole`` names the class ``black hole``."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def truth_labels(paths: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The ground-truth label of each row, from its folders; ``""`` where there is none.

    The rule: walk up from the file's own folder through the folders of its path *inside the
    triaged folder* (the triaged folder's own name does not count); the first folder whose
    name is a label of the model (compared by :func:`normalise_class`) is the truth. For a
    model whose labels are FLARE's macro classes, a folder named after a FLARE fine class
    counts as its macro class. So ``night1/galaxy/stars/x.png`` is ``galaxy`` only if
    ``stars`` is not a label, and ``fits/x.fits`` has no truth.
    """
    lookup = _folder_lookup(labels)
    found = np.full(len(paths), "", dtype=object)
    by_folder: dict[str, str] = {}
    for i, path in enumerate(paths.tolist()):
        folder = path.rpartition("/")[0]
        label = by_folder.get(folder)
        if label is None:
            label = by_folder[folder] = _nearest_label(folder, lookup)
        found[i] = label
    return found


def _folder_lookup(labels: Sequence[str]) -> dict[str, str]:
    lookup = {normalise_class(fine): MACRO_OF[fine] for fine in MACRO_OF if MACRO_OF[fine] in labels}
    lookup.update({normalise_class(label): label for label in labels})
    return lookup


def _nearest_label(folder: str, lookup: dict[str, str]) -> str:
    for name in reversed(PurePosixPath(folder).parts if folder else ()):
        label = lookup.get(normalise_class(name))
        if label is not None:
            return label
    return ""


def _macro_of_labels(results: Results) -> dict[str, str]:
    """The macro class of each label: FLARE's taxonomy for its classes, a macro class is its
    own, and for any other label the macro class the rows most often report with it."""
    mapping: dict[str, str] = {}
    ok = results.status == "ok"
    for label in results.labels:
        if label in MACRO_OF:
            mapping[label] = MACRO_OF[label]
        elif label in MACRO_CLASSES:
            mapping[label] = label
        else:
            seen = Counter(results.macro_class[ok & (results.fine_class == label)].tolist())
            mapping[label] = seen.most_common(1)[0][0] if seen else label
    return mapping


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class (both in ``classes`` order);
    pairs naming a class outside ``classes`` are left out."""
    index = {name: i for i, name in enumerate(classes)}
    t = np.array([index.get(v, -1) for v in truth.tolist()], dtype=np.int64)
    p = np.array([index.get(v, -1) for v in predicted.tolist()], dtype=np.int64)
    keep = (t >= 0) & (p >= 0)
    n = len(classes)
    return np.bincount(t[keep] * n + p[keep], minlength=n * n).reshape(n, n)


def thumbnail_uri(path: Path, stretch: StretchSpec, max_pixels: int) -> tuple[str | None, str]:
    """A JPEG data URI of ``path`` scaled to :data:`THUMBNAIL_PX`, or None and why not.

    Never raises for a bad file: a report is still worth having when some images moved or
    broke since the triage (each becomes a placeholder box on the page).
    """
    try:
        rgb = load_rgb(path, max_pixels=max_pixels, stretch=stretch)
        image = Image.fromarray(rgb)
        scale = THUMBNAIL_PX / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
    except FlareError as exc:
        return None, one_line(str(exc))
    except Exception as exc:  # noqa: BLE001 - one odd file must not cost the whole report
        return None, one_line(f"{path}: {type(exc).__name__}: {exc}")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), ""


def results_stretch(settings: dict[str, Any]) -> StretchSpec:
    """The stretch triage used for FITS files (so thumbnails look like what the model saw),
    or the default when the record has none or one this runtime cannot use."""
    preprocessing = settings.get("preprocessing")
    found = preprocessing.get("stretch") if isinstance(preprocessing, dict) else None
    if not isinstance(found, dict):
        return StretchSpec()
    try:
        return PreprocessSpec(stretch=StretchSpec(**found)).stretch  # validated like a bundle's
    except (TypeError, ValueError, FlareError):
        return StretchSpec()


# --- sections -------------------------------------------------------------------------------


def _header_section(results: Results, folder: Path | None, folder_note: str) -> str:
    ok = results.status == "ok"
    threshold = results.settings.get("--threshold")
    model = results.settings.get("--model")
    facts = [
        ("results", str(results.source)),
        ("triaged folder", str(results.root) if results.root is not None else "not recorded"),
        ("threshold", f"{threshold:g} (rows below it are flagged)" if isinstance(threshold, (int, float))
         else "not recorded"),
        ("model", f"{model[:12]}… (fingerprint)" if isinstance(model, str) and len(model) > 12
         else str(model) if model else "not recorded"),
        ("classes", ", ".join(results.labels) or "not recorded"),
    ]
    if folder is not None and folder != results.root:
        facts.insert(2, ("images read from", str(folder)))
    tiles = [("rows", len(results)), ("classified", int(ok.sum())), ("flagged for review", int(results.flagged.sum())),
             ("unreadable", int((~ok).sum()))]
    return (f"<header>\n<h1>Triage report</h1>\n"
            f'<dl class="facts">{"".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts)}</dl>\n'
            f'<div class="tiles" id="totals">'
            + "".join(f'<div class="tile" data-count="{_esc(k)}"><b>{v:,}</b>{_esc(k)}</div>' for k, v in tiles)
            + "</div>\n" + (f'<p class="note">{_esc(folder_note)}</p>\n' if folder_note else "") + "</header>")


def _counts_section(results: Results) -> str:
    fine, macro = class_counts(results)
    parts = ['<section id="classes">\n<h2>Classes</h2>',
             '<p class="note">Classified rows per predicted class (unreadable files are not counted).</p>']
    for title, key, counts, colour in (("Fine classes", "fine-counts", fine, _BLUE),
                                       ("Macro classes", "macro-counts", macro, _ORANGE)):
        total = sum(counts.values())
        rows = "".join(f'<tr data-class="{_esc(name)}"><td>{_esc(name)}</td><td class="num">{n:,}</td>'
                       f'<td class="num">{_percent(n, total)}</td></tr>' for name, n in counts.items())
        table = (f'<table id="{key}"><thead><tr><th>class</th><th class="num">rows</th><th class="num">share</th>'
                 f"</tr></thead><tbody>{rows}</tbody></table>")
        parts.append(f'<h3>{_esc(title)}</h3>\n<div class="pair">{bar_chart_svg(list(counts.items()), colour)}'
                     f"{table}</div>")
    return "\n".join(parts) + "\n</section>"


def _confidence_section(results: Results) -> str:
    conf = results.confidence[(results.status == "ok") & ~np.isnan(results.confidence)]
    threshold = results.settings.get("--threshold")
    threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    if conf.size == 0:
        body = '<p class="note">No classified rows.</p>'
    else:
        stats = (f"median {np.median(conf):.3f}, lowest {conf.min():.3f}"
                 + (f"; {int((conf < threshold).sum()):,} rows below the threshold {threshold:g}"
                    if threshold is not None else "; no threshold recorded"))
        body = histogram_svg(conf, threshold) + f'\n<p class="note">{_esc(stats)}</p>'
    return ('<section id="confidence">\n<h2>Confidence</h2>\n'
            f'<p class="note">Top-1 probability of each classified row, in {HISTOGRAM_BINS} bins over [0, 1].</p>\n'
            f"{body}\n</section>")


def _flagged_section(results: Results, flagged_idx: np.ndarray, shown: np.ndarray, folder: Path | None,
                     folder_note: str) -> str:
    total = len(flagged_idx)
    head = '<section id="flagged">\n<h2>Flagged for review</h2>\n'
    if total == 0:
        return head + '<p class="note">No row is flagged.</p>\n</section>'
    statement = ("Showing the only flagged row." if total == 1 else
                 f"Showing all {total:,} flagged, least confident first." if len(shown) == total else
                 f"Showing the {len(shown):,} least confident of {total:,} flagged (--thumbnails sets how many).")
    head += f'<p class="note" id="flagged-statement">{_esc(statement)}</p>\n'
    if folder is None:
        return head + f'<p class="note">{_esc(folder_note)}</p>\n' + _flagged_table(results, shown) + "\n</section>"
    stretch = results_stretch(results.settings)
    limit = results.settings.get("--max-pixels")
    max_pixels = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_PIXELS

    def thumbnail(rel: str) -> tuple[str | None, str]:
        path = _image_path(folder, rel)
        return thumbnail_uri(path, stretch, max_pixels) if isinstance(path, Path) else (None, path)

    # Pillow and astropy release the GIL while decoding: a few threads make 200 FITS files quick.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="flare-thumb") as pool:
        thumbs = list(pool.map(thumbnail, results.path[shown].tolist()))
    figures = []
    for i, (uri, why) in zip(shown.tolist(), thumbs):
        name = _esc(results.path[i])
        caption = (f"{name}<br>{_esc(results.fine_class[i])} · {results.confidence[i]:.3f}")
        picture = (f'<img src="{uri}" alt="{name}">' if uri is not None else
                   f'<div class="placeholder" title="{_esc(why)}">cannot be read</div>')
        figures.append(f'<figure class="thumb">{picture}<figcaption>{caption}</figcaption></figure>')
    return head + '<div class="grid">' + "\n".join(figures) + "</div>\n</section>"


def _image_path(folder: Path, rel: str) -> Path | str:
    """``folder / rel``, or why not: a results row naming a path outside the folder (absolute,
    or climbing out with ``..``) is not read, whoever wrote the file."""
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts:
        return f"{rel}: not a path inside the triaged folder"
    return folder.joinpath(*parts)


def _flagged_table(results: Results, shown: np.ndarray) -> str:
    rows = "".join(f'<tr><td class="path">{_esc(results.path[i])}</td><td>{_esc(results.fine_class[i])}</td>'
                   f'<td class="num">{results.confidence[i]:.3f}</td></tr>' for i in shown.tolist())
    return ('<table id="flagged-list"><thead><tr><th>path</th><th>class</th><th class="num">confidence</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")


def _errors_section(results: Results) -> str:
    idx = np.flatnonzero(results.status != "ok")
    head = '<section id="errors">\n<h2>Unreadable files</h2>\n'
    if idx.size == 0:
        return head + '<p class="note">Every file was read.</p>\n</section>'
    listed = idx[:MAX_ERROR_ROWS]
    statement = ("The one file that could not be read." if idx.size == 1 else
                 f"All {idx.size:,} files that could not be read." if listed.size == idx.size else
                 f"The first {listed.size:,} of {idx.size:,} files that could not be read.")
    rows = "".join(f'<tr><td class="path">{_esc(results.path[i])}</td><td>{_esc(results.error[i])}</td></tr>'
                   for i in listed.tolist())
    return (head + f'<p class="note">{_esc(statement)}</p>\n<table id="error-rows"><thead><tr><th>path</th>'
            f"<th>error</th></tr></thead><tbody>{rows}</tbody></table>\n</section>")


def _truth_section(results: Results, truth: np.ndarray) -> tuple[str, tuple[int, float | None, float | None]]:
    """Accuracy and confusion matrices over the classified rows that have ground truth;
    returns the section and (rows with truth, fine accuracy, macro accuracy)."""
    head = ('<section id="ground-truth">\n<h2>Agreement with class folders</h2>\n'
            '<p class="note">Ground truth is the nearest folder of a file\'s path (inside the triaged folder) '
            "whose name is a class, e.g. <code>survey/hr/galaxy/x.png</code> is a galaxy; case, "
            "<code>_</code> and <code>-</code> do not matter.</p>\n")
    has_truth = truth != ""
    ok = results.status == "ok"
    rows = has_truth & ok
    n = int(rows.sum())
    if n == 0:
        unread = int((has_truth & ~ok).sum())
        note = ("no ground-truth folders: no file lies in a folder named after a class" if unread == 0 else
                f"no classified row in a ground-truth folder ({unread:,} such files could not be read)")
        return head + f'<p class="note" id="no-truth">{_esc(note)}</p>\n</section>', (0, None, None)
    macro_of = _macro_of_labels(results)
    true_fine, pred_fine = truth[rows], results.fine_class[rows]
    true_macro = np.array([macro_of.get(t, t) for t in true_fine.tolist()], dtype=object)
    pred_macro = results.macro_class[rows]
    fine_acc = float(np.mean(true_fine == pred_fine))
    macro_acc = float(np.mean(true_macro == pred_macro))
    skipped = int((has_truth & ~ok).sum())
    fine_counts, macro_counts = class_counts(results)
    fine_order = list(dict.fromkeys([*fine_counts, *sorted(set(true_fine.tolist()))]))
    macro_order = list(dict.fromkeys([*macro_counts, *sorted(set(true_macro.tolist()))]))
    text = (f"{n:,} classified rows lie in ground-truth folders ({n / len(results):.1%} of all rows"
            + (f"; {skipped:,} more could not be read" if skipped else "") + ").")
    tiles = (f'<div class="tiles"><div class="tile"><b id="fine-accuracy" data-value="{fine_acc:.6f}">'
             f"{fine_acc:.1%}</b>fine accuracy</div>"
             f'<div class="tile"><b id="macro-accuracy" data-value="{macro_acc:.6f}">{macro_acc:.1%}</b>'
             f'macro accuracy</div><div class="tile"><b id="truth-rows">{n:,}</b>rows with ground truth</div></div>')
    body = (f'<p class="note">{_esc(text)}</p>\n{tiles}\n'
            "<h3>Fine classes (rows: folder, columns: prediction)</h3>\n"
            + confusion_table_html(confusion_matrix(true_fine, pred_fine, fine_order), fine_order, "confusion-fine")
            + "\n<h3>Macro classes</h3>\n"
            + confusion_table_html(confusion_matrix(true_macro, pred_macro, macro_order), macro_order,
                                   "confusion-macro"))
    return head + body + "\n</section>", (n, fine_acc, macro_acc)


# --- drawing --------------------------------------------------------------------------------


def bar_chart_svg(items: Sequence[tuple[str, int]], colour: str = _BLUE, width: int = 560) -> str:
    """Horizontal bars, one per (name, count), the count written at the bar's end."""
    label_w, row_h, pad = 170, 22, 6
    bar_w = width - label_w - 70
    top = max((n for _, n in items), default=0) or 1
    height = pad * 2 + row_h * max(len(items), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="bar chart">']
    for k, (name, n) in enumerate(items):
        y = pad + k * row_h
        w = bar_w * n / top
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h * 0.68:.1f}" text-anchor="end" font-size="13" '
                     f'fill="#1d2733">{_esc(_short(name, 24))}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}">'
                     f"<title>{_esc(name)}: {n:,}</title></rect>"
                     f'<text x="{label_w + w + 5:.1f}" y="{y + row_h * 0.68:.1f}" font-size="12" '
                     f'fill="#52606d">{n:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(values: np.ndarray, threshold: float | None, bins: int = HISTOGRAM_BINS, width: int = 720,
                  height: int = 240) -> str:
    """A histogram of values in [0, 1]; bins below ``threshold`` in orange, the threshold a
    dashed red line (absent when the results record none)."""
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    left, right, top, bottom = 56, 16, 16, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = int(counts.max()) or 1

    def x(v: float) -> float:
        return left + plot_w * v

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="confidence histogram">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#52606d"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#52606d"/>']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#52606d">'
                     f"{round(peak * frac):,}</text>")
    for k, n in enumerate(counts.tolist()):
        lo, hi = float(edges[k]), float(edges[k + 1])
        h = plot_h * n / peak
        fill = _ORANGE if threshold is not None and hi <= threshold + 1e-12 else _BLUE
        parts.append(f'<rect x="{x(lo) + 1:.1f}" y="{top + plot_h - h:.1f}" width="{x(hi) - x(lo) - 2:.1f}" '
                     f'height="{h:.1f}" fill="{fill}"><title>{lo:.2f}-{hi:.2f}: {n:,} rows</title></rect>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 14}" text-anchor="middle" font-size="11" '
                     f'fill="#52606d">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 1}" text-anchor="middle" font-size="11" '
                 f'fill="#52606d">confidence</text>')
    if threshold is not None and math.isfinite(threshold):
        tx = x(min(max(threshold, 0.0), 1.0))
        parts.append(f'<line id="threshold" x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{top + plot_h}" '
                     f'stroke="{_RED}" stroke-width="2" stroke-dasharray="5 3"/>'
                     f'<text x="{tx + 5:.1f}" y="{top + 8}" font-size="12" fill="{_RED}">threshold {threshold:g}'
                     "</text>")
    parts.append("</svg>")
    return "".join(parts)


def confusion_table_html(matrix: np.ndarray, classes: Sequence[str], table_id: str) -> str:
    """The matrix as a table, each cell shaded by its share of the true class (its row), with
    row totals and recall; the diagonal is outlined."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in classes)
    body = []
    for r, name in enumerate(classes):
        total = int(matrix[r].sum())
        cells = []
        for c in range(len(classes)):
            n = int(matrix[r, c])
            share = n / total if total else 0.0
            ink = "#fff" if share > 0.55 else "#1d2733"
            cls = ' class="diag"' if r == c else ""
            cells.append(f'<td{cls} style="background:rgba(47,109,181,{share:.3f});color:{ink}">{n:,}</td>')
        recall = f"{matrix[r, r] / total:.1%}" if total else "–"
        body.append(f"<tr><th>{_esc(name)}</th>{''.join(cells)}<td>{total:,}</td><td>{recall}</td></tr>")
    return (f'<table class="confusion" id="{_esc(table_id)}"><thead><tr><th>folder \\ predicted</th>{head}'
            f"<th>rows</th><th>recall</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


# --- text -------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    """Text for HTML (element or quoted attribute): escaped, and valid UTF-8 even for a file
    name whose bytes are not (the page would not be writable otherwise)."""
    return escape(utf8_text(str(value)), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _percent(n: int, total: int) -> str:
    return f"{n / total:.1%}" if total else "–"
