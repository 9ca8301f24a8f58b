"""``flare catalog``: planted sources found where they are, classified as ``flare classify``
classifies their cutouts, a real frame agreeing with photutils, and triage's resume guarantees."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial import cKDTree

from flare.benchmarks.planted import frame_wcs, make_frame, write_fits
from flare.cli import cli
from flare.runtime.apps.catalog import CatalogOptions, SOURCE_COLUMNS, catalog, cutout_box
from flare.runtime.core.detection import DetectionSettings, detect
from flare.runtime.io.frames import read_frame

sys.path.insert(0, str(Path(__file__).parent))
from test_triage import FakePredictor, read_csv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("galaxy", "nebula", "planet")
DSS = Path(__import__("astropy").__file__).parent / "wcs" / "tests" / "data" / "dss.14.29.56-62.41.05.fits.gz"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """A 768 px FITS frame with a rotated WCS: 120 stars (SNR 12-200) and 4 stamps of each class."""
    frame, truth = make_frame(768, 120, classes=CLASSES, per_class=4, seed=3)
    path = tmp_path_factory.mktemp("planted") / "field.fits"
    write_fits(path, frame, frame_wcs(768))
    return path, truth


def match(rows: list[dict[str, str]], truth) -> tuple[np.ndarray, np.ndarray]:
    """For each planted object, the nearest detection's index and distance (pixels)."""
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    distance, index = cKDTree(xy).query(np.c_[truth.x, truth.y])
    return index, distance


def test_planted_sources_are_found_where_they_are(planted, bundle: Path, tmp_path: Path) -> None:
    path, truth = planted
    out = tmp_path / "cat.csv"
    result = CliRunner().invoke(cli, ["catalog", str(path), "--model", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    header, rows = read_csv(out)
    assert header[:len(SOURCE_COLUMNS)] == list(SOURCE_COLUMNS) and header[-1] == "error"
    index, distance = match(rows, truth)
    stars = np.array([k == "star" for k in truth.kind])
    bright = truth.snr >= 10
    found = distance < np.where(stars, 2.0, 6.0)  # a stamp's centroid depends on its isophote
    assert found[bright].mean() >= 0.95
    # a detection is false when it lies on no planted object (a stamp's own fragments are not false)
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    to_star = cKDTree(np.c_[truth.x[stars], truth.y[stars]]).query(xy)[0]
    to_stamp = cKDTree(np.c_[truth.x[~stars], truth.y[~stars]]).query(xy)[0]
    false = (to_star > 3.0) & (to_stamp > 16.0)
    assert false.sum() <= 0.02 * len(rows)
    assert np.all(distance[stars & found] < 0.5)  # windowed centroids (XWIN/YWIN)
    # RA/Dec: astropy's pixel_to_world of the true position, within 0.1 arcsec
    wcs = frame_wcs(768)
    sky = wcs.pixel_to_world(truth.x[stars & found], truth.y[stars & found])
    got = [rows[i] for i in index[stars & found]]
    from astropy.coordinates import SkyCoord

    measured = SkyCoord([float(r["ra"]) for r in got], [float(r["dec"]) for r in got], unit="deg")
    assert measured.separation(sky).arcsec.max() < 0.1
    # each planted stamp gets the class 'flare classify' gives its cutout saved as a file
    frame = read_frame(path, __import__("flare.runtime.core.preprocess", fromlist=["x"]).StretchSpec(), 10**9)
    sources = detect(frame.search, DetectionSettings())
    assert len(sources) == len(rows)
    from astropy.io import fits

    files, expected = [], []
    for k in np.flatnonzero(~stars & found):
        i = int(index[k])
        box = cutout_box(sources, i, None, 768, 768)
        files.append(tmp_path / f"cutout{i}.fits")
        fits.PrimaryHDU(frame.raw(box)[0]).writeto(files[-1])
        expected.append(rows[i]["fine_class"])
    assert len(files) >= len(CLASSES) * 3
    result = CliRunner().invoke(cli, ["classify", str(bundle), *map(str, files), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["class"] for line in result.stdout.splitlines()] == expected


def test_a_real_frame_agrees_with_photutils(bundle: Path, tmp_path: Path) -> None:
    """The DSS plate astropy ships: our count against photutils' own detection, by hand."""
    photutils = pytest.importorskip("photutils")
    from astropy.convolution import convolve
    from astropy.io import fits
    from photutils.background import Background2D
    from photutils.segmentation import deblend_sources, detect_sources

    out = tmp_path / "dss.fits"
    result = CliRunner().invoke(cli, ["catalog", str(DSS), "--model", str(bundle), "--out", str(out),
                                      "--detect-threshold", "3"])
    assert result.exit_code == 0, result.output
    from astropy.table import Table

    table = Table.read(out, hdu="CATALOG")
    assert table["ra"].unit == "deg" and np.isfinite(table["ra"]).all()
    data = fits.getdata(DSS).astype(np.float64)
    bkg = Background2D(data, (64, 64), filter_size=(3, 3), exclude_percentile=50)  # a crowded plate
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float) / 16
    convolved = convolve(data - bkg.background, kernel)
    segments = detect_sources(convolved, 3 * bkg.background_rms, 5)
    theirs = deblend_sources(convolved, segments, 5, progress_bar=False).n_labels
    assert abs(len(table) - theirs) <= max(2, 0.2 * theirs), (len(table), theirs)
    assert fits.getheader(out, "CATALOG")["CREATOR"] == "flare catalog"
    assert photutils.__version__


def small_frames(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        frame, _ = make_frame(96, 3, seed=100 + i, snr_range=(40.0, 80.0))
        write_fits(root / f"f{i:02d}.fits", frame, frame_wcs(96) if i % 2 else None)
    return sorted(p.name for p in root.iterdir())


def test_bad_frames_are_rows_and_formats_agree(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    names = small_frames(root, 3)
    (root / "broken.fits").write_bytes(b"SIMPLE  = not really")
    (root / "empty.png").write_bytes(b"")
    from PIL import Image

    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(root / "blank.png")
    summary = catalog([root], FakePredictor(), tmp_path / "cat.csv")
    assert summary.errors == 2 and summary.processed == len(names) + 3
    _, rows = read_csv(tmp_path / "cat.csv")
    by_status = {r["frame"]: r["status"] for r in rows}
    assert by_status["broken.fits"] == "error" and by_status["blank.png"] == "empty"
    assert all(r["ra"] == "" for r in rows if r["frame"] == "f00.fits")
    assert all(r["ra"] != "" for r in rows if r["frame"] == "f01.fits" and r["status"] == "ok")
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    catalog([root], FakePredictor(), tmp_path / "cat.parquet")
    table = pq.read_table(tmp_path / "cat.parquet").to_pydict()
    assert len(table["frame"]) == len(rows) and table["source_id"][table["status"].index("ok")] == 1
    catalog([root], FakePredictor(), tmp_path / "cat.ecsv")
    from astropy.table import Table

    assert len(Table.read(tmp_path / "cat.ecsv")) == len(rows)


def test_resume_refuses_other_settings_and_repairs_a_short_frame(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    small_frames(root, 4)
    out = tmp_path / "cat.csv"
    catalog([root], FakePredictor(), out)
    reference = out.read_bytes()
    lines = reference.split(b"\n")
    out.write_bytes(b"\n".join(lines[:-3]) + b"\n")  # a kill inside the last frame's write: whole lines, not all
    summary = catalog([root], FakePredictor(), out)
    assert summary.processed == 1 and out.read_bytes() == reference
    from flare.runtime.foundation.errors import FlareError

    with pytest.raises(FlareError, match="other settings.*--detect-threshold"):
        catalog([root], FakePredictor(), out, options=CatalogOptions(DetectionSettings(threshold=3.0)))
    other = FakePredictor()
    other.fingerprint = "another model"
    with pytest.raises(FlareError, match="other settings.*--model"):
        catalog([root], other, out)
    assert out.read_bytes() == reference


KILLABLE_RUN = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
from test_triage import FakePredictor
from flare.runtime.apps.catalog import catalog
catalog([pathlib.Path(sys.argv[2])], FakePredictor(delay=0.03), pathlib.Path(sys.argv[3]), batch_size=1, workers=1)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    names = small_frames(root, 8)
    reference = tmp_path / "reference.csv"
    catalog([root], FakePredictor(), reference)
    rng = random.Random(7)
    killed_mid_run = 0
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}.csv"
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, str(Path(__file__).parent), str(root), str(out)],
                                    cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline and not (out.exists() and
                                                                               out.read_bytes().count(b"\n") > 1):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate()
            assert proc.returncode in (-signal.SIGKILL, 0), stderr.decode()
            done = {r["frame"] for r in read_csv(out)[1]} if out.exists() else set()
            killed_mid_run += proc.returncode == -signal.SIGKILL and 0 < len(done) < len(names)
        summary = catalog([root], FakePredictor(), out)
        assert summary.skipped + summary.processed == len(names)
        assert out.read_bytes() == reference.read_bytes()
    assert killed_mid_run >= 2


@pytest.mark.parametrize("args, message, code", [
    (["--model", "{missing}"], "does not exist", 1),
    (["--model", "{bundle}", "--detect-threshold", "0"], "--detect-threshold", 2),
    (["--model", "{bundle}", "--detect-threshold", "nan"], "--detect-threshold", 2),
    (["--model", "{bundle}", "--cutout", "junk"], "--cutout", 2),
    (["--model", "{bundle}", "--out", "{foreign}"], "did not write", 1),
    (["--model", "{bundle}", "--out", "{tmp}/cat.xlsx"], "unknown results format", 2),
])
def test_mistakes_are_one_line(args: list[str], message: str, code: int, tmp_path: Path) -> None:
    frame = tmp_path / "f.fits"
    write_fits(frame, make_frame(64, 2, seed=1)[0])
    (tmp_path / "foreign.csv").write_text("name,value\nx,1\n")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    values = {"missing": str(tmp_path / "nope"), "bundle": str(bundle), "foreign": str(tmp_path / "foreign.csv"),
              "tmp": str(tmp_path)}
    argv = ["catalog", str(frame), *[a.format(**values) for a in args]]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "cat.csv")]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == code, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "foreign.csv").read_text() == "name,value\nx,1\n"


def test_a_bundle_of_another_task_is_refused(tmp_path: Path, bundle: Path) -> None:
    other = tmp_path / "other"
    import shutil

    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["task"] = "enhance"
    (other / "manifest.json").write_text(json.dumps(manifest))
    frame = tmp_path / "f.fits"
    write_fits(frame, make_frame(64, 2, seed=1)[0])
    result = CliRunner().invoke(cli, ["catalog", str(frame), "--model", str(other), "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_report_recognises_a_catalogue(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    small_frames(root, 2)
    catalog([root], FakePredictor(), tmp_path / "cat.fits")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "cat.fits"), "--out", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.count('<section class="frame"') == 2 and "Least confident" in html and "data:image/jpeg" in html
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "cat.fits"), "--out", str(tmp_path / "cat.fits")])
    assert result.exit_code != 0  # the output guard: never over a file the report did not write
