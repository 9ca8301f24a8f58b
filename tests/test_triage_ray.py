"""``flare triage --engine ray`` on a local Ray instance with 2 CPUs, started here.

The engine must give the local engine's rows, and keep every file exactly once when a worker
or the driver is killed mid-run. Models are the fake of test_triage (pickled by value, since
Ray's workers cannot import the tests folder) except in the CLI test, which runs a bundle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from flare.cli import cli
from flare.runtime.apps.triage import triage
from flare.runtime.foundation.errors import FlareError, UsageError
from test_results import csv_rows, parquet_rows, survey_with_errors
from test_triage import REPO, FakePredictor, make_survey

ray = pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra")
pytest.importorskip("pyarrow")

import ray_fakes  # noqa: E402 - after the skip: it imports the Ray engine
from flare.runtime.apps.triage_ray import RayOptions, triage_on_ray  # noqa: E402

#: Ray's command line run by this interpreter: a virtual environment that borrows its packages
#: (a .pth file) has no ``ray`` script of its own, and the head's workers run this interpreter.
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> str:
    """A Ray head with 2 CPUs for this module; its address.

    ``ray start --block`` stays in the foreground and takes down what it started when it is
    stopped, so the teardown touches no other Ray on the machine (``ray stop`` would).
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Token authentication (Ray's default for 'ray start' since 2.5x) needs every client to be
    # set up for it; a test cluster on 127.0.0.1 does without.
    # Its own temporary folder: 'ray start' records the cluster it started there, and a record
    # in the machine's /tmp/ray would outlive this test cluster.
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp}
    head = subprocess.Popen([*RAY, "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, f"ray start failed: {head.stderr.read().decode()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up in 180 s"
                time.sleep(0.5)
        time.sleep(2)  # the GCS answers before the raylet has registered the node's CPUs
        yield address
    finally:
        # Once Ray Data has run, 'ray start --block' takes ~30 s to stop gracefully on SIGTERM
        # (its head, GCS and raylet are all still up after 5 s); the test cluster needs no
        # graceful stop, so after 5 s its process group is killed. Workers in other groups
        # exit with their raylet.
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # killed below
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(autouse=True)
def fakes_by_value() -> None:
    ray_fakes.register_by_value()


def local_reference(root: Path, out: Path) -> list[list[str]]:
    triage(root, FakePredictor(), out, batch_size=5)
    return csv_rows(out)


def test_ray_gives_the_local_rows(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = survey_with_errors(root, 60)
    reference = local_reference(root, tmp_path / "local.csv")

    options = RayOptions(address=cluster, workers=2, cpus_per_worker=0.5, files_per_block=16)
    counted: list[int] = []
    summary = triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "ray.parquet", options=options,
                            batch_size=7, progress=counted.append)
    assert (summary.processed, summary.errors, sum(counted)) == (len(rels), 2, len(rels))
    assert sorted(parquet_rows(tmp_path / "ray.parquet")) == sorted(reference)

    # The same engine into a CSV: the writer is the driver's journal, whichever format.
    triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "ray.csv", options=options)
    assert sorted(csv_rows(tmp_path / "ray.csv")) == sorted(reference)

    # Re-running resumes: nothing left to do, nothing sent to the cluster.
    again = triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "ray.parquet", options=options)
    assert (again.processed, again.skipped) == (0, len(rels))
    # The local engine resumes a Ray run's results too: one format, one record.
    local = triage(root, FakePredictor(), tmp_path / "ray.parquet")
    assert (local.processed, local.skipped) == (0, len(rels))


def test_a_killed_worker_loses_and_duplicates_nothing(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 120)
    reference = local_reference(root, tmp_path / "local.csv")
    pids = tmp_path / "pids"
    pids.mkdir()
    killer = ray_fakes.ActorKiller(pids)
    options = RayOptions(address=cluster, workers=2, cpus_per_worker=0.5, files_per_block=8)
    summary = triage_on_ray(root, ray_fakes.FakePredictors(delay=0.05, pid_dir=str(pids)), tmp_path / "out.parquet",
                            options=options, batch_size=4, progress=killer)
    killer.check()
    assert summary.processed == 120
    rows = parquet_rows(tmp_path / "out.parquet")
    assert len(rows) == len({r[0] for r in rows}) == 120
    assert sorted(rows) == sorted(reference)


DRIVER = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
import ray_fakes
from flare.runtime.apps.results import ParquetJournal
from flare.runtime.apps.triage_ray import RayOptions, triage_on_ray
ray_fakes.register_by_value()
ParquetJournal.COMMIT_SECONDS = 0.2
triage_on_ray(pathlib.Path(sys.argv[2]), ray_fakes.FakePredictors(delay=float(sys.argv[5])), pathlib.Path(sys.argv[3]),
              options=RayOptions(address=sys.argv[4], workers=2, cpus_per_worker=0.5, files_per_block=8), batch_size=4)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_killed_driver_rerun_loses_and_duplicates_nothing(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 150)
    reference = local_reference(root, tmp_path / "local.csv")
    out = tmp_path / "out.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def driver(delay: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", DRIVER, str(Path(__file__).parent), str(root), str(out), cluster,
                                 str(delay)], cwd=REPO, env=env, stderr=subprocess.PIPE)

    proc = driver(0.05)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not list(out.glob("part-*.parquet")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    before = len(parquet_rows(out))
    assert 0 < before < 150, "the driver should die with some rows committed and some not"

    rerun = driver(0.0)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr.decode()[-2000:]
    rows = parquet_rows(out)
    assert len(rows) == len({r[0] for r in rows}) == 150
    assert sorted(rows) == sorted(reference)


def test_cli_ray_engine_matches_local_on_a_bundle(cluster: str, bundle: Path, sky_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    local = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out", str(tmp_path / "l.csv")])
    assert local.exit_code == 0, local.output
    result = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out",
                                 str(tmp_path / "r.parquet"), "--engine", "ray", "--address", cluster,
                                 "--workers", "2", "--cpus-per-worker", "0.5"])
    assert result.exit_code == 0, result.output
    assert "classified" in result.stdout
    rows, reference = parquet_rows(tmp_path / "r.parquet"), csv_rows(tmp_path / "l.csv")
    assert [r[0] for r in sorted(rows)] == [r[0] for r in sorted(reference)]
    # Same classes and flags; probabilities to the printed 6 decimals, give or take one unit
    # for threads summing in another order on another process.
    for got, want in zip(sorted(rows), sorted(reference)):
        assert got[:3] + got[4:7] == want[:3] + want[4:7]
        assert all(abs(float(a) - float(b)) <= 2e-6 for a, b in zip(got[7:], want[7:]))


def test_a_relative_folder_is_read_by_absolute_path(cluster: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make_survey(tmp_path / "survey", 10)
    monkeypatch.chdir(tmp_path)  # the workers' working directory is another one
    summary = triage_on_ray(Path("survey"), ray_fakes.FakePredictors(), Path("out.parquet"),
                            options=RayOptions(address=cluster))
    assert (summary.processed, summary.errors) == (10, 0)


def test_worker_notes_and_failures_reach_the_driver(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 6)
    options = RayOptions(address=cluster, workers=2, cpus_per_worker=0.5, files_per_block=2)
    note = "CUDAExecutionProvider unavailable: running on CPU"
    summary = triage_on_ray(root, ray_fakes.FakePredictors(notes=(note,)), tmp_path / "a.parquet", options=options,
                            batch_size=2)
    assert summary.backend_notes == (note,)  # once, however many actors said it
    assert f"backend: {note}" in summary.format()

    with pytest.raises(FlareError, match="opened another model than the driver.*same bundle at the same path"):
        triage_on_ray(root, ray_fakes.FakePredictors(worker_fingerprint="stale-copy"), tmp_path / "b.parquet",
                      options=options)
    with pytest.raises(FlareError, match="^bundle/model.onnx is damaged on this node$"):
        triage_on_ray(root, ray_fakes.FakePredictors(open_error="bundle/model.onnx is damaged on this node"),
                      tmp_path / "c.parquet", options=options)


def test_cluster_too_small_and_options_refused(cluster: str, tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    with pytest.raises(UsageError, match="leave none for decoding"):
        triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "o.parquet",
                      options=RayOptions(address=cluster, workers=2, cpus_per_worker=1))
    with pytest.raises(UsageError, match="GPUs do not fit"):
        triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "o.parquet",
                      options=RayOptions(address=cluster, workers=1, gpus_per_worker=1))
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(FlareError, match=f"no Ray cluster answers at {nobody}.*ray start --head"):
        triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "o.parquet", options=RayOptions(address=nobody))

    runner = CliRunner()
    local_with_ray_option = runner.invoke(cli, ["triage", str(root), "--model", str(root), "--out",
                                                str(tmp_path / "x.csv"), "--address", cluster])
    assert local_with_ray_option.exit_code == 2 and "only apply with --engine ray" in local_with_ray_option.output


def test_without_ray_the_command_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "survey"
    make_survey(root, 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(cli, ["triage", str(root), "--model", str(root), "--out", str(tmp_path / "r.parquet"),
                                      "--engine", "ray"])
    assert result.exit_code == 1
    assert "pip install 'flare-edge[ray]'" in result.output and "Traceback" not in result.output


def test_engine_benchmark_measures_every_engine(cluster: str, bundle: Path, tmp_path: Path) -> None:
    from flare.benchmarks.triage_engines import main

    root = tmp_path / "survey"
    make_survey(root, 24)
    result = CliRunner().invoke(main, ["--model", str(bundle), "--images", str(root), "--out", str(tmp_path / "bench"),
                                       "--workers", "1,2", "--repeat", "1", "--batch", "8", "--address", cluster])
    assert result.exit_code == 0, result.output
    import json

    runs = json.loads((tmp_path / "bench" / "triage_engines.json").read_text())["runs"]
    assert [(r["engine"], r["workers"], r["cpus_per_worker"]) for r in runs] == [
        ("local", 1, None), ("ray", 1, 1.0), ("ray", 2, 0.5)]  # 2 CPUs: one always left for decoding
    for r in runs:
        assert r["images"] == 24 and r["seconds"] > 0
        assert r["images_per_second"] == pytest.approx(24 / r["seconds"])
    table = (tmp_path / "bench" / "triage_engines.md").read_text()
    assert table.count("| ray |") == 2 and "Machine:" in table


def test_no_address_starts_a_local_instance_despite_a_stale_record(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's own default would try the cluster 'ray start' last recorded here, and hang on it
    for minutes when that one is gone; no --address and no RAY_ADDRESS means a new instance."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
        monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        root = tmp_path / "survey"
        make_survey(root, 4)
        started = time.monotonic()
        summary = triage_on_ray(root, ray_fakes.FakePredictors(), tmp_path / "out.parquet")
        assert summary.processed == 4 and time.monotonic() - started < 120
        assert not ray.is_initialized()  # the instance it started is gone again
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_an_address_no_host_could_have_is_one_line() -> None:
    address = "a" * 70 + ".example:6379"  # a DNS label is at most 63 characters
    from flare.runtime.apps.triage_ray import _check_reachable
    from flare.runtime.foundation.errors import UsageError

    with pytest.raises(UsageError, match="is not a host:port Ray could reach") as info:
        _check_reachable(address)
    assert "\n" not in str(info.value) and address in str(info.value)
