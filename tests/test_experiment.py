"""``flare experiment`` end to end at a toy scale: every arm trains and is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.mark.slow
def test_experiment_runs_all_arms_and_resumes(sky_data: Path, tmp_path: Path) -> None:
    from flare.training.pipeline.experiment import ARMS, ExperimentConfig, run_experiment

    cfg = ExperimentConfig(seeds=2, epochs=1, batch=16, input_size=32, size=32, sr_epochs=1, sr_steps=2,
                           diffusion_epochs=1, diffusion_vae_epochs=1, per_image=1, steps=2)
    out = tmp_path / "exp"
    results = run_experiment(sky_data, out, cfg)
    arms = results["models"]["resnet18"]
    assert list(arms) == list(ARMS)
    for scores in arms.values():
        assert set(scores) == {"in-domain", "synthetic OOD", "held-out, harsher"}
        assert scores["held-out, harsher"]["images"] == 8  # the test originals, degraded harder
        assert scores["in-domain"]["images"] == 8  # one test original per class
        assert 0.0 <= scores["in-domain"]["acc"] <= 1.0
        cell = scores["in-domain"]
        assert [r["seed"] for r in cell["seeds"]] == [0, 1]
        assert cell["acc"] == pytest.approx(sum(r["acc"] for r in cell["seeds"]) / 2)
        low, high = cell["acc_interval"]
        assert low <= cell["acc"] <= high
    difference = results["differences"]["resnet18"]["in-domain"]
    per_seed = [f["acc"] - r["acc"] for f, r in zip(arms["FLARE"]["in-domain"]["seeds"],
                                                    arms["Raw_Aug_LR"]["in-domain"]["seeds"])]
    assert difference["mean"] == pytest.approx(sum(per_seed) / 2) and difference["n"] == 2
    counts = results["training_images"]
    assert counts["Raw_Aug_LR"] == 6 * counts["Raw_LR"]  # originals plus five augmentations
    assert counts["FLARE"] > counts["Raw_LR"]
    # no augmented or generated variant of a test image was trained on
    test_groups = {line.split(",")[2] for line in (out / "split.csv").read_text().splitlines()[1:]
                   if line.endswith(",test")}
    for arm in ARMS:
        rows = [line.split(",") for line in (out / f"split_{arm}.csv").read_text().splitlines()[1:]]
        assert not any(r[2] in test_groups and r[3] == "train" for r in rows)
    table = (out / "results.md").read_text()
    assert table.count("| resnet18 |") == 3 and "synthetic OOD acc" in table
    assert "resnet18, in-domain:" in table and "significan" in table
    # a second run finds every step done
    mtime = (out / "runs" / "resnet18" / "seed1" / "FLARE" / "results.json").stat().st_mtime
    assert json.loads((out / "results.json").read_text())["models"] == run_experiment(sky_data, out, cfg)["models"]
    assert (out / "runs" / "resnet18" / "seed1" / "FLARE" / "results.json").stat().st_mtime == mtime
    # other settings are refused, naming what changed, and nothing is redone or rewritten
    from dataclasses import replace

    from flare.runtime.foundation.errors import FlareError

    before = (out / "results.json").read_bytes()
    with pytest.raises(FlareError, match=r"--epochs 1 then, 2 now.*new --out"):
        run_experiment(sky_data, out, replace(cfg, epochs=2))
    assert (out / "results.json").read_bytes() == before


def test_a_mixed_data_set_is_also_scored_on_its_real_photos_alone(tmp_path: Path) -> None:
    from flare.training.pipeline.experiment import REAL_SET, Experiment, ExperimentConfig, format_table

    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "mix.json").write_text(json.dumps({"classes": {}, "real_files": ["galaxy/NGC_891__1.png"]}))
    assert Experiment(tmp_path / "mixed", tmp_path / "exp", ExperimentConfig(), "cpu").real_photos == {
        "galaxy/NGC_891__1.png"}
    assert Experiment(tmp_path, tmp_path / "exp", ExperimentConfig(), "cpu").real_photos == set()
    # the real photos are in-domain: not part of the out-of-domain average
    cell = {"acc": 0.5, "macro_f1": 0.5, "acc_interval": [None, None], "macro_f1_interval": [None, None]}
    arms = {arm: {"in-domain": cell, REAL_SET: cell, "held-out, harsher": {**cell, "acc": 0.25}}
            for arm in ("Raw_LR", "Raw_Aug_LR", "FLARE")}
    table = format_table({"config": {"seed": 0}, "models": {"resnet18": arms}})
    assert "| resnet18 | Raw_LR |  | 50.00 | 50.00 | 25.00 | 50.00 | 25.00 |" in table


def test_the_command_records_given_stage_models(sky_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--sr`` and ``--diffusion`` reach the settings record as paths with checksums (once a Path
    from the option parser broke the record's JSON with a traceback)."""
    from click.testing import CliRunner

    from flare.cli import cli
    from flare.training.pipeline import experiment

    def settings_only(data: Path, out: Path, cfg: experiment.ExperimentConfig, device: str = "auto") -> dict:
        experiment.record_settings(experiment.Experiment(data, out, cfg, device))
        (Path(out) / "results.md").write_text("table\n")
        return {}

    monkeypatch.setattr(experiment, "run_experiment", settings_only)
    sr, diffusion = tmp_path / "sr.safetensors", tmp_path / "diffusion_run"
    sr.write_bytes(b"weights")
    diffusion.mkdir()
    (diffusion / "run.json").write_text("{}")
    out = tmp_path / "exp"
    result = CliRunner().invoke(cli, ["experiment", str(sky_data), "--out", str(out), "--sr", str(sr),
                                      "--diffusion", str(diffusion)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "experiment.json").read_text())
    assert record["--diffusion"]["path"] == str(diffusion) and len(record["--diffusion"]["sha256"]) == 64
    assert record["--sr"]["path"] == str(sr)
