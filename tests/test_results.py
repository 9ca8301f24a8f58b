"""Parquet results for the local triage engine: typed columns, the CSV's values, resume, kills,
and the choice of format by ``--out``'s name (flare.runtime.apps.results)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from flare.runtime.apps.results import PARQUET_RECORD, ParquetJournal, load_results, results_format, text_cell
from flare.runtime.apps.triage import csv_header, triage
from flare.runtime.foundation.errors import FlareError, UsageError
from test_triage import LABELS, FakePredictor, colour_image, make_survey, read_csv, run_and_kill

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def parquet_rows(folder: Path) -> list[list[str]]:
    """The rows of a Parquet results folder as the CSV writes them, read with pyarrow alone."""
    table = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])
    columns = table.to_pydict()
    return [[text_cell(name, columns[name][i]) for name in table.column_names] for i in range(table.num_rows)]


def csv_rows(path: Path) -> list[list[str]]:
    header, rows = read_csv(path)
    return [[row[name] for name in header] for row in rows]


def survey_with_errors(root: Path, n: int) -> list[str]:
    rels = make_survey(root, n)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (root / "empty.fits").write_bytes(b"")
    return sorted(rels + ["broken.png", "empty.fits"])


def test_format_follows_the_name(tmp_path: Path) -> None:
    assert results_format(tmp_path / "r.csv") == "csv"
    assert results_format(tmp_path / "r.CSV") == "csv"
    assert results_format(tmp_path / "r.parquet") == "parquet"
    assert results_format(tmp_path / "results") == "parquet"  # a folder name
    (tmp_path / "existing.d").mkdir()
    assert results_format(tmp_path / "existing.d") == "parquet"
    with pytest.raises(UsageError, match=r"unknown results format '\.json'.*\.csv.*\.parquet"):
        results_format(tmp_path / "r.json")


def test_parquet_has_the_csv_rows_typed(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = survey_with_errors(root, 25)
    triage(root, FakePredictor(), tmp_path / "r.csv", batch_size=4)
    summary = triage(root, FakePredictor(), tmp_path / "r.parquet", batch_size=4)
    assert summary.processed == len(rels) and summary.errors == 2

    folder = tmp_path / "r.parquet"
    assert folder.is_dir() and (folder / PARQUET_RECORD).is_file()
    assert parquet_rows(folder) == csv_rows(tmp_path / "r.csv")

    table = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])
    schema = table.schema
    assert schema.names == csv_header(LABELS)
    assert schema.field("confidence").type == pa.float64()
    assert schema.field(f"p_{LABELS[0]}").type == pa.float64()
    assert schema.field("flagged").type == pa.bool_()
    assert schema.field("path").type == pa.string()
    rows = table.to_pylist()
    broken = next(r for r in rows if r["path"] == "broken.png")
    assert broken["status"] == "error" and broken["fine_class"] is None and broken["confidence"] is None
    assert "broken.png" in broken["error"]
    ok = next(r for r in rows if r["status"] == "ok")
    assert isinstance(ok["confidence"], float) and isinstance(ok["flagged"], bool) and ok["error"] is None

    # pandas reads the folder whole, as docs/ray-triage.md says.
    pandas = pytest.importorskip("pandas")
    assert len(pandas.read_parquet(folder)) == len(rels)

    loaded = load_results(folder)
    assert list(loaded.path) == [r[0] for r in csv_rows(tmp_path / "r.csv")]
    assert loaded.root == root.resolve() and loaded.labels == LABELS


def test_parquet_resumes_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = make_survey(root, 20)
    out = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="model crashed"):
        triage(root, FakePredictor(fail_after=2), out, batch_size=3)
    assert len(parquet_rows(out)) == 6  # committed on the way out, as Ctrl-C would be

    summary = triage(root, FakePredictor(), out, batch_size=3)
    assert (summary.skipped, summary.processed) == (6, 14)
    triage(root, FakePredictor(), tmp_path / "reference.csv", batch_size=5)
    assert parquet_rows(out) == csv_rows(tmp_path / "reference.csv")
    assert [r[0] for r in parquet_rows(out)] == rels

    again = triage(root, FakePredictor(), out)
    assert (again.processed, again.skipped) == (0, 20)
    # A resume reads only the columns it needs: the fixed ones, as the CSV has them.
    with ParquetJournal(out, csv_header(LABELS), resume_columns=7) as journal:
        assert journal.rows == [row[:7] for row in csv_rows(tmp_path / "reference.csv")]
    with pytest.raises(FlareError, match="other settings"):
        triage(root, FakePredictor(), out, threshold=0.9)


def test_parquet_commits_parts_as_it_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "survey"
    make_survey(root, 12)
    monkeypatch.setattr(ParquetJournal, "COMMIT_ROWS", 4)
    triage(root, FakePredictor(), tmp_path / "out.parquet", batch_size=2)
    parts = sorted((tmp_path / "out.parquet").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000001.parquet", "part-000002.parquet", "part-000003.parquet"]
    assert not list((tmp_path / "out.parquet").glob(".part-*"))


def test_parquet_refusals(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    (tmp_path / "file.parquet").write_bytes(b"PAR1 someone else's file")
    with pytest.raises(UsageError, match="is a file"):
        triage(root, FakePredictor(), tmp_path / "file.parquet")
    assert (tmp_path / "file.parquet").read_bytes() == b"PAR1 someone else's file"

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FlareError, match="did not write"):
        triage(root, FakePredictor(), foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "out.parquet"
    triage(root, FakePredictor(), out)
    (out / ".part-000009.parquet.tmp").write_bytes(b"half a part")  # what a kill mid-write leaves
    triage(root, FakePredictor(), out)
    assert not (out / ".part-000009.parquet.tmp").exists()
    part = next(out.glob("part-*.parquet"))
    part.write_bytes(b"garbage")
    with pytest.raises(FlareError, match=f"{part.name} cannot be read.*move it out"):
        triage(root, FakePredictor(), out)


def test_stray_parts_are_refused_and_a_lock_alone_is_ours(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / ".flare.lock").touch()  # a run killed right after taking the lock
    triage(root, FakePredictor(), out)
    part = next(out.glob("part-*.parquet"))
    (out / "part-000001 copy.parquet").write_bytes(part.read_bytes())
    with pytest.raises(FlareError, match="part-000001 copy.parquet is not a part triage wrote"):
        triage(root, FakePredictor(), out)
    with pytest.raises(FlareError, match="is not a part triage wrote"):
        load_results(out)


def test_odd_names_get_distinct_keys_in_both_formats(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    names = ["a\\b.png", "a\nb.png", "a\\nb.png", "caf\udce9.png"]  # backslash, newline, both, not UTF-8
    for i, name in enumerate(names):
        colour_image(i).save(root / os.fsencode(name).decode("utf-8", "surrogateescape"), format="PNG")
    for out in (tmp_path / "r.csv", tmp_path / "r.parquet"):
        first = triage(root, FakePredictor(), out)
        assert (first.processed, first.errors) == (4, 0)
        rows = parquet_rows(out) if out.suffix == ".parquet" else csv_rows(out)
        assert len({row[0] for row in rows}) == 4
        assert "caf\\xe9.png" in {row[0] for row in rows}
        again = triage(root, FakePredictor(), out)
        assert (again.processed, again.skipped) == (0, 4)


def test_one_writer_per_parquet_folder(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    make_survey(root, 3)
    schema_header = csv_header(LABELS)
    with ParquetJournal(tmp_path / "out.parquet", schema_header):
        with pytest.raises(FlareError, match="being written by another flare process"):
            triage(root, FakePredictor(), tmp_path / "out.parquet")


KILLABLE_RUN = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
from test_triage import FakePredictor
from flare.runtime.apps.results import ParquetJournal
from flare.runtime.apps.triage import triage
ParquetJournal.COMMIT_SECONDS = 0.05  # many parts, so kills land between and inside commits
triage(pathlib.Path(sys.argv[2]), FakePredictor(delay=0.05), pathlib.Path(sys.argv[3]), batch_size=2, workers=2)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_parquet_sigkill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    rels = make_survey(root, 40)
    reference = tmp_path / "reference.csv"
    triage(root, FakePredictor(), reference, batch_size=7)
    rng = random.Random(20261124)
    mid_run = 0
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}.parquet"
        for _ in range(2):
            code = run_and_kill(KILLABLE_RUN, root, out, lambda: bool(list(out.glob("part-*.parquet"))), rng)
            done = len(parquet_rows(out))
            mid_run += code == -signal.SIGKILL and 0 < done < len(rels)
        summary = triage(root, FakePredictor(), out, batch_size=3)
        assert summary.skipped + summary.processed == len(rels)
        assert parquet_rows(out) == csv_rows(reference)
    assert mid_run >= 2, "the kills should mostly land while parts are being written"


def test_results_may_lie_inside_the_survey(bundle: Path, tmp_path: Path) -> None:
    """As a CSV always could: triage reads only image files and leaves its own results out."""
    from click.testing import CliRunner

    from flare.cli import cli

    root = tmp_path / "survey"
    rels = make_survey(root, 5)
    for name in ("results.csv", "results.parquet"):
        result = CliRunner().invoke(cli, ["triage", str(root), "--model", str(bundle), "--out", str(root / name)])
        assert result.exit_code == 0, result.output
        loaded = load_results(root / name)
        assert sorted(loaded.path) == rels
    again = CliRunner().invoke(cli, ["triage", str(root), "--model", str(bundle), "--out", str(root / "results.csv")])
    assert again.exit_code == 0 and "0 triaged in this run" in again.stdout
