"""``flare demo`` end to end at a tiny scale: every step runs and leaves its outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from flare.cli import cli
from flare.demo import astropy_fits_files

pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_demo_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--per-class", "5", "--epochs", "1", "--input-size", "32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for path in ("run/confusion_matrix.png", "bundle/manifest.json", "bundle/model.onnx", "triage.csv"):
        assert (out / path).is_file(), path
    with open(out / "triage.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    fits = [p for p in rows if p.startswith("fits/")]
    assert len(fits) == len(astropy_fits_files()) >= 2
    assert all(rows[p]["status"] == "ok" for p in fits), [rows[p]["error"] for p in fits]
    assert rows["broken.png"]["status"] == "error"
    assert sum(p.startswith("synthetic/hr/") for p in rows) == 96
    assert "FLARE Edge demo finished" in result.stdout
    # a second run reuses the finished training and triage instead of redoing them
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "0 triaged in this run" in again.stdout
