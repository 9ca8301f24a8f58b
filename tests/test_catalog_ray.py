"""``flare catalog --engine ray`` on the 2-CPU Ray head of test_triage_ray, started once here.

The engine must write the local engine's rows (bad frames included), and keep every frame
exactly once, all its sources together, when a worker or the driver is killed mid-run. Models
are the fakes of test_triage_ray (pickled by value) except in the CLI test, which runs a bundle.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.runtime.apps.catalog import catalog, catalog_kind
from flare.runtime.apps.results import text_cell
from flare.runtime.foundation.errors import FlareError
from test_catalog import small_frames
from test_triage import REPO, FakePredictor

ray = pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra")
pq = pytest.importorskip("pyarrow.parquet")

import ray_fakes  # noqa: E402 - after the skip: it imports the Ray engine
from flare.runtime.apps.catalog_ray import catalog_on_ray  # noqa: E402
from flare.runtime.apps.triage_ray import RayOptions  # noqa: E402
from test_triage_ray import cluster, free_port  # noqa: E402,F401 - the module's Ray head, one start per file

#: Two actors of half a CPU each: one CPU of the head stays free, as the capacity check asks.
TWO_ACTORS = {"workers": 2, "cpus_per_worker": 0.5}


@pytest.fixture(autouse=True)
def fakes_by_value() -> None:
    ray_fakes.register_by_value()


def frames_with_errors(root: Path, n: int) -> list[str]:
    """``n`` planted FITS frames (every other one with a WCS), two unreadable and one without sources."""
    names = small_frames(root, n)
    (root / "broken.fits").write_bytes(b"SIMPLE  = not really")
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(root / "blank.png")
    return sorted([*names, "broken.fits", "empty.png", "blank.png"])


def csv_lines(path: Path) -> tuple[bytes, list[bytes]]:
    """A catalogue CSV's header line and its row lines, as written."""
    header, *rows = path.read_bytes().splitlines()
    return header, rows


def in_frame_order(rows: list[bytes]) -> list[bytes]:
    """Rows ordered by frame as the local engine writes them; a frame's own rows keep their order."""
    return sorted(rows, key=lambda line: next(csv.reader(io.StringIO(line.decode())))[0])


def by_frame(rows: list[list[str]]) -> list[list[str]]:
    """Parsed rows in frame order, a frame's own rows in theirs."""
    return sorted(rows, key=lambda row: row[0])


def parquet_rows(folder: Path) -> list[list[str]]:
    """A Parquet catalogue's rows as the CSV writes them (test_results' reader types triage's columns)."""
    columns = pq.read_table(folder).to_pydict()
    return [[text_cell(name, columns[name][i], catalog_kind) for name in columns]
            for i in range(len(columns["frame"]))]


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))[1:]


def test_ray_gives_the_local_rows_and_bad_frames_are_rows(cluster: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "frames"
    names = frames_with_errors(root, 6)
    local = catalog([root], FakePredictor(), tmp_path / "local.csv", batch_size=2)
    assert (local.processed, local.errors) == (len(names), 2)

    counted: list[int] = []
    summary = catalog_on_ray([root], ray_fakes.FakePredictors(), tmp_path / "ray.csv", batch_size=2,
                             ray_options=RayOptions(address=cluster, **TWO_ACTORS), progress=counted.append)
    assert (summary.processed, summary.errors, summary.sources, sum(counted)) == (
        len(names), 2, local.sources, len(names))
    header, rows = csv_lines(tmp_path / "ray.csv")
    want_header, want_rows = csv_lines(tmp_path / "local.csv")
    assert header == want_header and in_frame_order(rows) == want_rows  # byte for byte, the error lines too
    statuses = {row[0]: row[2] for row in csv_rows(tmp_path / "ray.csv")}
    assert (statuses["broken.fits"], statuses["empty.png"], statuses["blank.png"]) == ("error", "error", "empty")

    # Into Parquet, from a relative path: the workers read frames by absolute path.
    with monkeypatch.context() as m:
        m.chdir(tmp_path)
        catalog_on_ray([Path("frames")], ray_fakes.FakePredictors(), Path("ray.parquet"),
                       ray_options=RayOptions(address=cluster))
    assert sorted(parquet_rows(tmp_path / "ray.parquet")) == sorted(csv_rows(tmp_path / "local.csv"))
    # Re-running resumes: nothing left, nothing sent; the local engine resumes a Ray catalogue too.
    again = catalog_on_ray([root], ray_fakes.FakePredictors(), tmp_path / "ray.parquet",
                           ray_options=RayOptions(address=cluster))
    assert (again.processed, again.skipped, again.sources) == (0, len(names), local.sources)
    assert catalog([root], FakePredictor(), tmp_path / "ray.parquet").skipped == len(names)


def unique_frames(rows: list[list[str]]) -> set[str]:
    """The frames of ``rows``, checking that none of their sources is there twice."""
    keys = [(row[0], row[1]) for row in rows]
    assert len(keys) == len(set(keys)), "a frame's rows were written twice"
    return {row[0] for row in rows}


def test_a_killed_worker_loses_and_duplicates_nothing(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    names = small_frames(root, 24)
    catalog([root], FakePredictor(), tmp_path / "local.csv")
    pids = tmp_path / "pids"
    pids.mkdir()
    killer = ray_fakes.ActorKiller(pids)
    summary = catalog_on_ray([root], ray_fakes.FakePredictors(delay=0.03, pid_dir=str(pids)),
                             tmp_path / "out.parquet", batch_size=1, ray_options=RayOptions(address=cluster, **TWO_ACTORS),
                             progress=killer)
    killer.check()
    assert summary.processed == len(names)
    rows = parquet_rows(tmp_path / "out.parquet")
    assert unique_frames(rows) == set(names)
    assert sorted(rows) == sorted(csv_rows(tmp_path / "local.csv"))


DRIVER = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
import ray_fakes
from flare.runtime.apps.catalog_ray import catalog_on_ray
from flare.runtime.apps.results import ParquetJournal
from flare.runtime.apps.triage_ray import RayOptions
ray_fakes.register_by_value()
ParquetJournal.COMMIT_SECONDS = 0.2
catalog_on_ray([pathlib.Path(sys.argv[2])], ray_fakes.FakePredictors(delay=float(sys.argv[5])), pathlib.Path(sys.argv[3]),
               ray_options=RayOptions(address=sys.argv[4], workers=2, cpus_per_worker=0.5), batch_size=1)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_killed_driver_rerun_loses_and_duplicates_nothing(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    names = small_frames(root, 30)
    catalog([root], FakePredictor(), tmp_path / "local.csv")
    out = tmp_path / "out.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def driver(delay: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", DRIVER, str(Path(__file__).parent), str(root), str(out), cluster,
                                 str(delay)], cwd=REPO, env=env, stderr=subprocess.PIPE)

    proc = driver(0.03)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not list(out.glob("part-*.parquet")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    before = unique_frames(parquet_rows(out))
    assert 0 < len(before) < len(names), "the driver should die with some frames committed and some not"

    rerun = driver(0.0)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr.decode()[-2000:]
    rows = parquet_rows(out)
    assert unique_frames(rows) == set(names)
    assert sorted(rows) == sorted(csv_rows(tmp_path / "local.csv"))


def test_worker_failures_reach_the_driver(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    small_frames(root, 2)
    options = RayOptions(address=cluster, **TWO_ACTORS)
    with pytest.raises(FlareError, match="opened another model than the driver.*same bundle at the same path"):
        catalog_on_ray([root], ray_fakes.FakePredictors(worker_fingerprint="stale-copy"), tmp_path / "a.parquet",
                       ray_options=options)
    with pytest.raises(FlareError, match="^bundle/model.onnx is damaged on this node$"):
        catalog_on_ray([root], ray_fakes.FakePredictors(open_error="bundle/model.onnx is damaged on this node"),
                       tmp_path / "b.parquet", ray_options=options)


def test_cli_ray_engine_matches_local_on_a_bundle_and_mistakes_are_one_line(cluster: str, bundle: Path,
                                                                            tmp_path: Path) -> None:
    root = tmp_path / "frames"
    small_frames(root, 3)
    runner = CliRunner()
    local = runner.invoke(cli, ["catalog", str(root), "--model", str(bundle), "--out", str(tmp_path / "l.csv")])
    assert local.exit_code == 0, local.output
    # Two actors of a CPU each fill the 2-CPU head: the catalogue has no decode tasks to leave one for.
    result = runner.invoke(cli, ["catalog", str(root), "--model", str(bundle), "--out", str(tmp_path / "r.fits"),
                                 "--engine", "ray", "--address", cluster, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "3 frames: 3 catalogued in this run" in result.stdout
    rows, reference = csv_rows(tmp_path / "r.fits.rows.csv"), csv_rows(tmp_path / "l.csv")
    assert [r[:14] for r in by_frame(rows)] == [r[:14] for r in reference]  # the same sources
    # Same classes and flags; probabilities to the printed 6 decimals, give or take one unit for
    # threads summing in another order on another process.
    for got, want in zip(by_frame(rows), reference):
        assert got[14] == want[14] and got[16] == want[16] and got[18] == want[18]
        assert all(abs(float(a) - float(b)) <= 2e-6 for a, b in zip(got[19:-1], want[19:-1]))
    from astropy.table import Table

    assert len(Table.read(tmp_path / "r.fits", hdu="CATALOG")) == len(rows)

    nobody = f"127.0.0.1:{free_port()}"
    for args, message, code in [
        (["--engine", "ray", "--address", nobody], f"no Ray cluster answers at {nobody}", 1),
        (["--engine", "ray", "--address", "a" * 70 + ".example:6379"], "is not a host:port Ray could reach", 2),
        (["--engine", "ray", "--address", cluster, "--workers", "3"], "do not fit: lower --workers", 2),
        (["--engine", "ray", "--address", cluster, "--gpus-per-worker", "1"], "GPUs do not fit", 2),
        (["--address", cluster, "--gpus-per-worker", "1"], "--address, --gpus-per-worker only apply with --engine ray",
         2),
    ]:
        out = tmp_path / f"x{len(args)}{args[-1][-1]}.csv"
        result = runner.invoke(cli, ["catalog", str(root), "--model", str(bundle), "--out", str(out), *args])
        assert result.exit_code == code, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_without_ray_the_command_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "frames"
    small_frames(root, 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(cli, ["catalog", str(root), "--model", str(root), "--out", str(tmp_path / "c.parquet"),
                                      "--engine", "ray"])
    assert result.exit_code == 1
    assert "pip install 'flare-edge[ray]'" in result.output and "Traceback" not in result.output
