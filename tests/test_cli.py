"""The ``flare`` command: listing, exit codes, one-line errors, and the runtime commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from flare.cli import cli

REPO = Path(__file__).resolve().parent.parent


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("data", "train", "export", "info", "classify", "triage", "demo"):
        assert f"  {name}" in result.output


def test_user_mistakes_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["info", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert missing.output.strip().count("\n") == 0 and "not a bundle folder" in missing.output
    bad_option = runner.invoke(cli, ["triage", str(tmp_path)])
    assert bad_option.exit_code == 2 and "--model" in bad_option.output
    not_data = runner.invoke(cli, ["train", str(tmp_path / "none"), "--model", "resnet18", "--out", str(tmp_path / "r")])
    assert not_data.exit_code == 2 and "Traceback" not in not_data.output


def test_missing_extra_is_named() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from flare.cli import cli\n"
            "cli(['train', '.', '--model', 'resnet18', '--out', '/tmp/x'], prog_name='flare')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert "'train' extra" in result.stderr and "Traceback" not in result.stderr


def test_info_classify_triage(bundle: Path, sky_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    info = runner.invoke(cli, ["info", str(bundle)])
    assert info.exit_code == 0, info.output
    assert "runs on     onnxruntime:cpu" in info.output and "parity      PASS" in info.output
    as_json = runner.invoke(cli, ["info", str(bundle), "--json"])
    assert json.loads(as_json.stdout)["task"] == "classify"

    images = sorted((sky_data / "hr" / "galaxy").glob("*.png"))[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    result = runner.invoke(cli, ["classify", str(bundle), *map(str, images), str(broken), "--json", "--top", "3"])
    assert result.exit_code == 1  # one unreadable image, the others still classified
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(p["path"]) for p in lines] == images and all(len(p["top"]) == 3 for p in lines)
    assert "broken.jpg" in result.stderr

    out = tmp_path / "triage.csv"
    tri = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out", str(out),
                              "--threshold", "0.9"])
    assert tri.exit_code == 0, tri.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and all(r["status"] == "ok" for r in rows)
    assert "48 classified" in tri.stdout
    again = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out", str(out)])
    assert again.exit_code == 0 and "0 triaged in this run" in again.stdout


def test_export_of_a_missing_run_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", "classifier", str(tmp_path / "no_run"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "b").exists()
