"""``flare report``: the page agrees with the results it summarises, stays self-contained and
bounded, and renders in a real browser without console messages.

The results come from the real :func:`flare.runtime.apps.triage.triage` over a small folder with
class folders (so the report has ground truth), a broken file, and file names that need HTML
escaping; every figure on the page is recomputed here from the CSV with the csv module.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.runtime.apps.report import truth_labels, write_report
from flare.runtime.apps.triage import csv_header, triage
from flare.runtime.core.taxonomy import FINE_CLASSES, MACRO_OF
from flare.runtime.foundation.errors import FlareError
from flare.runtime.foundation.fingerprint import record_path

from test_triage import FakePredictor, colour_image, make_survey

LABELS = list(FINE_CLASSES)
#: Folders named after classes, spelled as people do (``black_hole``, ``Galaxy``).
CLASS_FOLDERS = ("galaxy", "black_hole", "Comet", "star", "nebula")
ODD_NAME = "bad <b>&.png"  # broken on purpose: its name must show, escaped, in the errors table
THRESHOLD = 0.9  # high, so that many rows are flagged


# --- reading the page back ----------------------------------------------------------------------


class Page(HTMLParser):
    """What the tests look at: tables by id (rows of cell texts), images, links, ids' attributes."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.attrs_by_id: dict[str, dict[str, str]] = {}
        self.text_by_id: dict[str, str] = {}
        self.urls: list[str] = []  # every src and href
        self.figures: list[dict[str, object]] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._open_ids: list[tuple[str, str]] = []
        self._figure: dict[str, object] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.urls += [a[k] for k in ("src", "href") if k in a]
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
            self.text_by_id[a["id"]] = ""
            self._open_ids.append((tag, a["id"]))
        if tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "figure":
            self._figure = {"img": None, "placeholder": False, "caption": ""}
        elif tag == "img" and self._figure is not None:
            self._figure["img"] = a.get("src")
        elif tag == "div" and "placeholder" in a.get("class", "") and self._figure is not None:
            self._figure["placeholder"] = True
        elif tag == "br" and self._figure is not None:
            self._figure["caption"] = str(self._figure["caption"]) + "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "figure" and self._figure is not None:
            self.figures.append(self._figure)
            self._figure = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, ident in self._open_ids:
            self.text_by_id[ident] += data
        if self._figure is not None:
            self._figure["caption"] = str(self._figure["caption"]) + data

    def counts(self, table: str) -> dict[str, int]:
        """A class-count table as {class: rows}."""
        return {row[0]: int(row[1].replace(",", "")) for row in self.tables[table][1:]}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- the survey -------------------------------------------------------------------------------


def make_labelled_survey(root: Path) -> None:
    """30 images in class folders (some nested deeper, one under a non-class folder), one
    without ground truth, and two broken files with names that need escaping."""
    for i in range(30):
        folder = CLASS_FOLDERS[i % len(CLASS_FOLDERS)]
        rel = f"night{i % 2}/{folder}/img{i:03d}.png" if i % 3 else f"{folder}/deep/img{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        colour_image(i).save(root / rel)
    (root / "misc").mkdir()
    (root / "misc" / "<i>&amp;.png").write_bytes(b"")
    colour_image(101).save(root / "top.png")
    (root / ODD_NAME).write_bytes(b"\x89PNG\r\n\x1a\n broken")


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The labelled survey and its triage results CSV, made once for the module."""
    base = tmp_path_factory.mktemp("report")
    root = base / "survey"
    make_labelled_survey(root)
    out = base / "results.csv"
    triage(root, FakePredictor(), out, threshold=THRESHOLD)
    return root, out


def expected_truth(rel: str) -> str | None:
    """The ground truth the test expects: the nearest folder named after a class."""
    for part in reversed(Path(rel).parts[:-1]):
        name = part.lower().replace("_", " ")
        if name in LABELS:
            return name
    return None


# --- the page agrees with the CSV -------------------------------------------------------------


def test_report_matches_the_results(survey: tuple[Path, Path], tmp_path: Path) -> None:
    root, results = survey
    rows = read_rows(results)
    ok = [r for r in rows if r["status"] == "ok"]
    flagged = sorted((r for r in rows if r["flagged"] == "1"), key=lambda r: float(r["confidence"]))
    assert len(flagged) > 4, "the fixture must flag more rows than the test shows"

    summary = write_report(results, tmp_path / "report.html", thumbnails=4)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)

    # counts per class, as triage wrote them
    assert page.counts("fine-counts") == {c: sum(r["fine_class"] == c for r in ok) for c in LABELS}
    macros = {r["macro_class"] for r in ok}
    assert {k: v for k, v in page.counts("macro-counts").items() if v} == \
        {m: sum(r["macro_class"] == m for r in ok) for m in macros}
    assert (summary.rows, summary.ok, summary.errors, summary.flagged) == (len(rows), len(ok), 2, len(flagged))

    # the error row: its (escaped) name and its message
    errors = [r for r in rows if r["status"] == "error"]
    assert page.tables["error-rows"][1:] == [[e["path"], e["error"]] for e in errors]
    assert [e["path"] for e in errors] == [ODD_NAME, "misc/<i>&amp;.png"]
    assert "not an image" in errors[0]["error"] and "empty" in errors[1]["error"]
    assert ODD_NAME not in text and escape_html(ODD_NAME) in text
    assert "<i>&amp;.png" not in text and "&lt;i&gt;&amp;amp;.png" in text

    # accuracy, recomputed from the CSV with the test's own reading of the folder rule
    judged = [(expected_truth(r["path"]), r) for r in ok if expected_truth(r["path"])]
    assert len(judged) == 30
    fine = sum(t == r["fine_class"] for t, r in judged) / len(judged)
    macro = sum(MACRO_OF[t] == r["macro_class"] for t, r in judged) / len(judged)
    assert float(page.attrs_by_id["fine-accuracy"]["data-value"]) == pytest.approx(fine, abs=1e-6)
    assert float(page.attrs_by_id["macro-accuracy"]["data-value"]) == pytest.approx(macro, abs=1e-6)
    assert page.text_by_id["truth-rows"] == "30" and summary.with_truth == 30
    assert summary.fine_accuracy == pytest.approx(fine)

    # the confusion matrix: rows = folder class, columns = prediction, cells count the pairs
    matrix = page.tables["confusion-fine"]
    assert matrix[0][1:1 + len(LABELS)] == LABELS
    cells = {(row[0], LABELS[j]): int(v) for row in matrix[1:] for j, v in enumerate(row[1:1 + len(LABELS)])}
    for t in LABELS:
        for p in LABELS:
            assert cells[(t, p)] == sum(tt == t and r["fine_class"] == p for tt, r in judged), (t, p)
    assert "confusion-macro" in page.tables

    # a bounded sample of thumbnails, least confident first, and the page says so
    assert len(page.figures) == summary.shown == 4
    assert all(str(f["img"]).startswith("data:image/jpeg;base64,") for f in page.figures)
    assert [str(f["caption"]).split("\n")[0] for f in page.figures] == [r["path"] for r in flagged[:4]]
    assert page.text_by_id["flagged-statement"] == \
        f"Showing the 4 least confident of {len(flagged)} flagged (--thumbnails sets how many)."

    # self-contained: nothing to fetch, and the browser is told to fetch nothing
    assert all(url.startswith("data:") for url in page.urls), page.urls
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "default-src 'none'" in text and "<script" not in text.lower()


def escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_every_flagged_row_when_fewer_than_asked(survey: tuple[Path, Path], tmp_path: Path) -> None:
    _, results = survey
    n_flagged = sum(r["flagged"] == "1" for r in read_rows(results))
    summary = write_report(results, tmp_path / "r.html", thumbnails=1000)
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert len(page.figures) == summary.shown == n_flagged
    assert page.text_by_id["flagged-statement"] == f"Showing all {n_flagged} flagged, least confident first."


def test_parquet_results_give_the_same_page(survey: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    root, results = survey
    folder = tmp_path / "results.parquet"
    triage(root, FakePredictor(), folder, threshold=THRESHOLD)
    assert folder.is_dir() and list(folder.glob("part-*.parquet"))
    from_csv = Page(write_and_read(results, tmp_path / "csv.html"))
    from_parquet = Page(write_and_read(folder, tmp_path / "parquet.html"))
    for table in ("fine-counts", "macro-counts", "error-rows", "confusion-fine", "confusion-macro"):
        assert from_parquet.tables[table] == from_csv.tables[table], table
    for ident in ("fine-accuracy", "macro-accuracy"):
        assert from_parquet.attrs_by_id[ident] == from_csv.attrs_by_id[ident]
    assert [f["caption"] for f in from_parquet.figures] == [f["caption"] for f in from_csv.figures]


def write_and_read(results: Path, out: Path, **kwargs: object) -> str:
    write_report(results, out, **kwargs)  # type: ignore[arg-type]
    return out.read_text(encoding="utf-8")


def test_moved_or_broken_images_become_placeholders(survey: tuple[Path, Path], tmp_path: Path) -> None:
    """The images moved since the triage: no thumbnails and a sentence saying why; with
    --images, thumbnails again, and a file that broke since is a placeholder, not a crash."""
    root, results = survey
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    record = json.loads(record_path(results).read_text())
    copy = tmp_path / "results.csv"
    shutil.copyfile(results, copy)
    record_path(copy).write_text(json.dumps({**record, "DIR": str(tmp_path / "gone")}))

    page = Page(write_and_read(copy, tmp_path / "a.html", thumbnails=3))
    assert not page.figures and len(page.tables["flagged-list"]) == 1 + 3
    assert "is not on this machine" in (tmp_path / "a.html").read_text()

    least = sorted((r for r in read_rows(results) if r["flagged"] == "1"), key=lambda r: float(r["confidence"]))[0]
    (moved / least["path"]).write_bytes(b"broken since")
    page = Page(write_and_read(copy, tmp_path / "b.html", images=moved, thumbnails=3))
    assert [f["placeholder"] for f in page.figures] == [True, False, False]
    assert page.figures[0]["img"] is None and all(f["img"] for f in page.figures[1:])


def test_no_ground_truth_folders_is_said(tmp_path: Path) -> None:
    make_survey(tmp_path / "survey", 9)  # field0/night1/...: no folder names a class
    triage(tmp_path / "survey", FakePredictor(), tmp_path / "r.csv")
    assert (truth_labels(np.array(["field0/night1/a.png"], dtype=object), LABELS) == "").all()
    summary = write_report(tmp_path / "r.csv", tmp_path / "r.html")
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.text_by_id["no-truth"].startswith("no ground-truth folders")
    assert summary.fine_accuracy is None and "no ground-truth folders" in summary.format()
    assert "fine-accuracy" not in page.attrs_by_id


def test_ground_truth_rule() -> None:
    paths = np.array(["galaxy/a.png", "x/Black_Hole/deep/b.png", "star/galaxy/c.png", "d.png", "planets/e.png",
                      "star/f.fits"], dtype=object)
    assert truth_labels(paths, LABELS).tolist() == ["galaxy", "black hole", "galaxy", "", "", "star"]
    macros = sorted(set(MACRO_OF.values()))
    assert truth_labels(paths, macros).tolist() == ["Stellar Objects", "Cosmic Phenomena", "Stellar Objects", "", "",
                                                    "Stellar Objects"]


# --- the command ------------------------------------------------------------------------------


def test_cli_writes_the_report_and_refuses_other_files(survey: tuple[Path, Path], tmp_path: Path) -> None:
    _, results = survey
    out = tmp_path / "page" / "report.html"
    runner = CliRunner()
    ok = runner.invoke(cli, ["report", str(results), "--out", str(out), "--thumbnails", "2"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip().splitlines()[-1] == f"report in {out}" and out.is_file()
    assert "flagged for review (2 shown)" in ok.stdout and "fine accuracy" in ok.stdout
    assert not list(out.parent.glob("*.part"))

    not_results = tmp_path / "notes.csv"
    not_results.write_text("name,size\na,1\n")
    bad = runner.invoke(cli, ["report", str(not_results), "--out", str(tmp_path / "x.html")])
    assert bad.exit_code == 1 and bad.output.strip().count("\n") == 0
    assert str(not_results) in bad.output and "flare triage" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x.html").exists()

    missing = runner.invoke(cli, ["report", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.html")])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    zero = runner.invoke(cli, ["report", str(results), "--out", str(tmp_path / "x.html"), "--thumbnails", "0"])
    assert zero.exit_code == 2


def test_a_binary_file_is_not_results(tmp_path: Path) -> None:
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"a" * 200_000)  # one csv field over the module's limit
    with pytest.raises(FlareError, match="is not a triage results file"):
        write_report(blob, tmp_path / "r.html")


# --- many rows ---------------------------------------------------------------------------------


def test_twenty_thousand_rows_decode_only_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flare.runtime.apps.report as report

    n, shown = 20_000, 50
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(len(LABELS), 0.3), size=n)
    out = tmp_path / "big.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header(LABELS))
        for i, p in enumerate(probs):
            folder = LABELS[i % len(LABELS)]
            if i % 23 == 0:  # 870 unreadable: more than the page lists
                writer.writerow([f"{folder}/img{i:05d}.png", "", "", "", "", "error", f"broken {i}",
                                 *[""] * (len(LABELS) + 1)])
                continue
            top = int(np.argmax(p))
            conf = f"{p[top]:.6f}"
            writer.writerow([f"{folder}/img{i:05d}.png", LABELS[top], MACRO_OF[LABELS[top]], conf,
                             "1" if float(conf) < 0.5 else "0", "ok", "", *(f"{v:.6f}" for v in p), "0"])
    record_path(out).write_text(json.dumps({"DIR": str(tmp_path), "--threshold": 0.5, "--model": "f" * 64}))

    decoded: list[Path] = []

    def fake_load(path: Path, **kwargs: object) -> np.ndarray:
        decoded.append(Path(path))
        return np.full((40, 30, 3), 128, dtype=np.uint8)

    monkeypatch.setattr(report, "load_rgb", fake_load)
    started = time.perf_counter()
    summary = write_report(out, tmp_path / "big.html", thumbnails=shown)
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"{elapsed:.1f} s for {n} rows"

    rows = read_rows(out)
    n_flagged = sum(r["flagged"] == "1" for r in rows)
    n_errors = sum(r["status"] == "error" for r in rows)
    assert len(decoded) == shown and summary.shown == shown and summary.flagged == n_flagged > shown
    text = (tmp_path / "big.html").read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.figures) == shown
    assert page.text_by_id["flagged-statement"].startswith(f"Showing the {shown} least confident of {n_flagged:,} flagged")
    assert n_errors > report.MAX_ERROR_ROWS and len(page.tables["error-rows"]) == 1 + report.MAX_ERROR_ROWS
    assert f"The first {report.MAX_ERROR_ROWS} of {n_errors} files that could not be read." in text
    assert page.counts("fine-counts") == {c: sum(r["fine_class"] == c for r in rows if r["status"] == "ok")
                                          for c in LABELS}
    assert summary.with_truth == n - n_errors  # every path lies in a class folder
    assert len(text) < 2_000_000


# --- a real browser -------------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: How Chromium (``--enable-logging=stderr``) logs a page's console messages, uncaught errors
#: and Content-Security-Policy refusals: ``[pid:tid:time:INFO:CONSOLE:12] "message", source: ...``
#: (older builds write ``CONSOLE(12)``). The report has no script, so any such line is a fault.
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d*\)?\]|Uncaught ")


def find_browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip(f"no headless browser: none of {', '.join(BROWSERS)} is on PATH (CI installs chromium)")
    return found


def render(browser: str, page: Path, png: Path, height: int = 2000) -> str:
    """Screenshot ``page`` at 1280 x ``height`` with headless Chromium; returns its stderr.

    ``--no-sandbox`` because CI and containers run as root, where the sandbox refuses to
    start; a fresh profile, config and cache folder keep runs apart and the user's home
    untouched.
    """
    home = png.parent / "chromium-home"
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    result = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--hide-scrollbars", "--no-first-run", f"--user-data-dir={home / 'profile'}",
         f"--window-size=1280,{height}", f"--screenshot={png}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    return result.stderr


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE_LINE.search(line)]


def is_blank(png: Path) -> bool:
    """Nearly all one colour: under 1% of pixels differ from the most common one, or fewer
    than 16 colours in all."""
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return len(colours) < 16 or 1 - counts.max() / len(pixels) < 0.01


def test_report_renders_in_chromium_without_console_messages(survey: tuple[Path, Path], tmp_path: Path) -> None:
    browser = find_browser()
    _, results = survey
    write_report(results, tmp_path / "report.html", thumbnails=12)
    stderr = render(browser, tmp_path / "report.html", tmp_path / "report.png")
    assert console_messages(stderr) == []
    assert not is_blank(tmp_path / "report.png")
    assert Image.open(tmp_path / "report.png").size == (1280, 2000)


def test_the_browser_checks_can_fail(tmp_path: Path) -> None:
    """Each check catches what it is for: a script error, an outside resource the report's
    policy refuses, and a blank page."""
    browser = find_browser()
    policy = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:\">"
    cases = {  # name: (head, body)
        "script": ("", "<p>x</p><script>console.error('boom'); throw new Error('kaboom');</script>"),
        "outside": (policy, "<p>x</p><img src=\"https://example.invalid/a.png\">"),
        "blank": ("", ""),
    }
    found = {}
    for name, (head, body) in cases.items():
        page = tmp_path / f"{name}.html"
        page.write_text(f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>")
        found[name] = (console_messages(render(browser, page, tmp_path / f"{name}.png", height=400)),
                       is_blank(tmp_path / f"{name}.png"))
    assert any("boom" in line for line in found["script"][0]) and any("kaboom" in line for line in found["script"][0])
    assert any("Content Security Policy" in line for line in found["outside"][0])
    assert found["blank"] == ([], True)


def test_blank_check_on_pictures(tmp_path: Path) -> None:
    Image.new("RGB", (200, 100), "white").save(tmp_path / "white.png")
    assert is_blank(tmp_path / "white.png")
    rng = random.Random(0)
    noisy = Image.new("RGB", (200, 100), "white")
    for x in range(0, 200, 4):
        for y in range(0, 100, 4):
            noisy.putpixel((x, y), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    noisy.save(tmp_path / "noisy.png")
    assert not is_blank(tmp_path / "noisy.png")


def test_report_never_writes_over_a_file_it_did_not_make(survey: tuple[Path, Path], tmp_path: Path) -> None:
    root, results = survey
    runner = CliRunner()
    image = next(root.rglob("*.png"))
    user_file = tmp_path / "notes.html"
    user_file.write_text("<html>mine</html>")
    record = results.with_name(results.name + ".flare.json")
    for target in (record, image, user_file, results):
        before = target.read_bytes()
        result = runner.invoke(cli, ["report", str(results), "--out", str(target)])
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, (target, result.output)
        assert result.output.strip().count("\n") == 0 and str(target) in result.output
        assert target.read_bytes() == before
    page = tmp_path / "report.html"
    assert runner.invoke(cli, ["report", str(results), "--out", str(page)]).exit_code == 0
    assert runner.invoke(cli, ["report", str(results), "--out", str(page)]).exit_code == 0  # its own page


def test_a_non_finite_confidence_is_one_line_not_nan_on_the_page(survey: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, results = survey
    copy = tmp_path / "results.csv"
    shutil.copy(results, copy)
    shutil.copy(results.with_name(results.name + ".flare.json"), copy.with_name(copy.name + ".flare.json"))
    rows = read_rows(copy)
    header = list(rows[0])
    ok = next(i for i, r in enumerate(rows) if r["status"] == "ok")
    rows[ok]["confidence"] = "nan"
    with open(copy, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    result = CliRunner().invoke(cli, ["report", str(copy), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "'nan'" in result.output and "not a number in [0, 1]" in result.output
    assert not (tmp_path / "r.html").exists()
