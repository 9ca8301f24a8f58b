"""``flare data mix``: real photos where a class has them, synthetic images for the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.training.data.mix import real_files


def _tree(root: Path, files: dict[str, list[str]]) -> Path:
    for label, names in files.items():
        for part in ("hr", "lr"):
            (root / part / label).mkdir(parents=True, exist_ok=True)
            for name in names:
                Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / part / label / name)
    return root


def test_real_classes_come_from_real_and_the_rest_from_synthetic(tmp_path: Path) -> None:
    real = _tree(tmp_path / "real", {"galaxy": ["NGC_891__0.png", "NGC_891__1.png"], "star": ["NGC_752__0.png"]})
    synthetic = _tree(tmp_path / "synth", {"galaxy": ["galaxy_00000.png"], "star": ["star_00000.png"],
                                           "comet": ["comet_00000.png", "comet_00001.png"]})
    (real / "lr" / "star" / "NGC_752__0.png").unlink()  # no LR twin: not part of the mix
    result = CliRunner().invoke(cli, ["data", "mix", str(real), str(synthetic), "--out", str(tmp_path / "mixed")])
    assert result.exit_code == 0, result.output
    mixed = tmp_path / "mixed"
    for part in ("hr", "lr"):
        assert sorted(p.name for p in (mixed / part / "galaxy").iterdir()) == ["NGC_891__0.png", "NGC_891__1.png"]
        assert sorted(p.name for p in (mixed / part / "star").iterdir()) == ["star_00000.png"]
        assert len(list((mixed / part / "comet").iterdir())) == 2
    record = json.loads((mixed / "mix.json").read_text())
    assert record["classes"] == {
        "comet": {"source": "synthetic", "images": 2, "synthetic_images": 2},
        "galaxy": {"source": "real", "images": 2, "real_images": 2},
        "star": {"source": "synthetic", "images": 1, "synthetic_images": 1}}
    assert real_files(mixed) == {"galaxy/NGC_891__0.png", "galaxy/NGC_891__1.png"} and real_files(real) == set()
    # --synthetic all adds the synthetic images of the real classes too
    every = CliRunner().invoke(cli, ["data", "mix", str(real), str(synthetic), "--out", str(tmp_path / "all"),
                                     "--synthetic", "all"])
    assert every.exit_code == 0, every.output
    assert sorted(p.name for p in (tmp_path / "all" / "lr" / "galaxy").iterdir()) == [
        "NGC_891__0.png", "NGC_891__1.png", "galaxy_00000.png"]
    assert json.loads((tmp_path / "all" / "mix.json").read_text())["classes"]["galaxy"] == {
        "source": "real+synthetic", "images": 3, "real_images": 2, "synthetic_images": 1}
    assert real_files(tmp_path / "all") == real_files(mixed)
    # a re-mix after the real set lost a class keeps no link of the earlier mix
    for part in ("hr", "lr"):
        for f in (real / part / "galaxy").iterdir():
            f.unlink()
    assert CliRunner().invoke(cli, ["data", "mix", str(real), str(synthetic), "--out", str(mixed)]).exit_code == 0
    assert [p.name for p in (mixed / "hr" / "galaxy").iterdir()] == ["galaxy_00000.png"]


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    real = _tree(tmp_path / "real", {"galaxy": ["a.png"]})
    (tmp_path / "flat").mkdir()
    bad = CliRunner().invoke(cli, ["data", "mix", str(real), str(tmp_path / "flat"), "--out", str(tmp_path / "m")])
    assert bad.exit_code != 0 and "hr/ and lr/" in bad.output and "Traceback" not in bad.output
    inside = CliRunner().invoke(cli, ["data", "mix", str(real), str(real), "--out", str(real / "m")])
    assert inside.exit_code == 2 and "REAL" in inside.output and not (real / "m").exists()
