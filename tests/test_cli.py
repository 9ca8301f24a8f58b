"""The ``flare`` command: listing, exit codes, one-line errors, and the runtime commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
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
    assert missing.output.strip().count("\n") == 0 and "does not exist" in missing.output
    bad_option = runner.invoke(cli, ["triage", str(tmp_path)])
    assert bad_option.exit_code == 2 and "--model" in bad_option.output
    not_data = runner.invoke(cli, ["train", str(tmp_path / "none"), "--model", "resnet18", "--out", str(tmp_path / "r")])
    assert not_data.exit_code == 1 and "DATA" in not_data.output and "Traceback" not in not_data.output


def test_missing_extra_is_named(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from flare.cli import cli\n"
            f"cli(['train', '.', '--model', 'resnet18', '--out', {str(tmp_path / 'run')!r}], prog_name='flare')\n")
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
    again = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out", str(out),
                                "--threshold", "0.9"])
    assert again.exit_code == 0 and "0 triaged in this run" in again.stdout
    other = runner.invoke(cli, ["triage", str(sky_data / "lr"), "--model", str(bundle), "--out", str(out)])
    assert other.exit_code == 1 and "--threshold 0.9 then, 0.5 now" in other.stderr


def test_export_of_a_missing_run_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", "classifier", str(tmp_path / "no_run"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "b").exists()


def test_install_hints_are_true_to_pyproject() -> None:
    """Every hint names an extra that really installs the module (or the base install)."""
    import re
    import tomllib

    from flare.cli import INSTALLED_BY, install_hint

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}

    for module, (dist, extra) in INSTALLED_BY.items():
        listed = names(project["dependencies"] if extra is None else project["optional-dependencies"][extra])
        assert dist.lower() in listed, f"{module}: {dist} is not in {extra or 'the base dependencies'}"
        hint = install_hint(module)
        assert hint is not None and (f"flare-edge[{extra}]" in hint if extra else "base install" in hint)
    assert install_hint("some_unrelated_module") is None


def option_names() -> dict[str, dict[str, object]]:
    """Every option of every command: '<command path>' -> {option name: default}."""
    import click

    found: dict[str, dict[str, object]] = {}

    def walk(cmd: click.Command, path: str) -> None:
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}".strip())
            return
        found[path] = {opt: p.default for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}

    walk(cli, "")
    return found


def test_one_name_per_concept_across_commands() -> None:
    options = option_names()
    everywhere = {name for opts in options.values() for name in opts}
    # the classifier's input side has one name; the old overlapping spellings are gone
    assert not everywhere & {"--img-size", "--image-size", "--flare-size", "--gen-steps"}
    for command in ("train", "export classifier", "demo", "experiment"):
        assert "--input-size" in options[command], command
    # sampler steps are --steps; training batches per epoch are --steps-per-epoch
    assert "--steps-per-epoch" in options["train-sr"] and "--steps" not in options["train-sr"]
    for command in ("augment stage2", "augment all", "experiment"):
        assert "--steps" in options[command], command
    # one default for --select, and --device wherever torch runs
    assert {opts["--select"] for opts in options.values() if "--select" in opts} == {"percentile"}
    for command in ("train", "train-sr", "train-diffusion", "augment stage1", "augment stage2", "augment all",
                    "experiment"):
        assert options[command]["--device"] == "auto", command


@pytest.mark.parametrize("device, message", [
    ("nonsense", "is not a device: use auto, cpu, cuda or cuda:N"),
    ("cuda:x", "is not a device"),
])
def test_device_is_validated_when_parsed(tmp_path: Path, device: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["train", str(tmp_path), "--model", "resnet18", "--out", str(tmp_path / "r"),
                                      "--device", device])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_cuda_without_a_gpu_names_the_devices_here(sky_data: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(cli, ["train", str(sky_data / "hr"), "--model", "resnet18", "--out",
                                      str(tmp_path / "r"), "--epochs", "1", "--device", "cuda:1"])
    assert result.exit_code == 2
    assert "no CUDA GPU is usable on this machine (devices here: cpu)" in result.output


def leaf_commands() -> dict[str, object]:
    """Every runnable command of the CLI by its path, e.g. 'augment merge'."""
    import click

    found: dict[str, object] = {}

    def walk(cmd: click.Command, path: str) -> None:
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}".strip())
        else:
            found[path] = cmd

    walk(cli, "")
    return found


def test_every_command_checks_its_paths_and_ranges() -> None:
    """The mechanisms of flare.runtime.foundation.options reach every command: a new command that forgets them
    fails here, not in a user's hands."""
    import click

    from flare.runtime.foundation.options import CommaList, FiniteRange, FlareCommand, InputPath, OutputPath

    commands = leaf_commands()
    assert len(commands) >= 14
    for path, cmd in commands.items():
        assert isinstance(cmd, FlareCommand), f"{path}: define it with cls=FlareCommand (or in a CommandGroup)"
        for param in cmd.params:
            kind = param.type
            where = f"flare {path} {param.human_readable_name}"
            # every number has a declared range: a bare int/float lets 0 or -1 through to torch
            assert kind not in (click.INT, click.FLOAT), f"{where}: give it a range type from flare.runtime.foundation.options"
            if isinstance(kind, CommaList):  # each item of a list too
                assert kind.item not in (click.INT, click.FLOAT), f"{where}: give its items a range type"
            # a real number is finite by its type: click's FloatRange lets nan (and inf) through
            for real in (kind, getattr(kind, "item", None)):
                if isinstance(real, click.FloatRange):
                    assert isinstance(real, FiniteRange), f"{where}: use FiniteRange, which refuses nan and inf"
            # every path is declared as read or written, so existence and overlap are checked
            # (classify reports each unreadable or missing image on its own line and goes on)
            if (path, param.name) != ("classify", "images"):
                assert not isinstance(kind, click.Path), f"{where}: use InputPath or OutputPath"
            if param.name == "out":
                assert isinstance(kind, OutputPath), where
        outputs = [p for p in cmd.params if isinstance(p.type, OutputPath)]
        inputs = [p for p in cmd.params if isinstance(p.type, InputPath)]
        assert outputs or inputs, f"flare {path} declares no paths"


def test_ctrl_c_prints_the_command_that_resumes(monkeypatch: pytest.MonkeyPatch, sky_data: Path,
                                                 tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import flare.training.classifiers.train as training

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    out = tmp_path / "my run"
    result = CliRunner().invoke(cli, ["train", str(sky_data / "hr"), "--model", "resnet18", "--out", str(out),
                                      "--epochs", "2"])
    assert result.exit_code == 130
    line = result.stderr.strip().splitlines()[-1]
    # the exact command, quoted for the shell, with --resume added: re-running it continues
    assert line.endswith(f"flare train {sky_data / 'hr'} --model resnet18 --out '{out}' --epochs 2 --resume"), line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_real_options_refuse_numbers_that_mean_nothing(value: str, tmp_path: Path) -> None:
    for args in (["generate", str(tmp_path), "--class", "star", "--out", str(tmp_path / "o"), "--guidance", value],
                 ["generate", str(tmp_path), "--class", "star", "--out", str(tmp_path / "o"), "--strength", value],
                 ["triage", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "r.csv"),
                  "--threshold", value]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert args[-2] in result.output and ("finite" in result.output or "range" in result.output), result.output
    assert not (tmp_path / "o").exists()
