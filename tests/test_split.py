"""Leak-free grouped splits: variants of one original never cross splits."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.runtime.foundation.errors import UsageError
from flare.training.data.folders import Sample, scan_image_folder
from flare.training.data.splits import group_of, read_split, split_groups


def make_spacenet(root: Path, originals: int = 10) -> Path:
    """SpaceNet's Kaggle layout: originals plus _aug<K> and _<K> variants side by side."""
    base = root / "SpaceNet.FLARE.imam_alam"
    for cls in ("black hole", "galaxy", "planet"):
        folder = base / cls
        folder.mkdir(parents=True)
        stem = cls.replace(" ", "_")
        for n in range(originals):
            names = [f"{stem}_page_1_image_{n}_SwinIR_large.png"]
            names += [f"{stem}_page_1_image_{n}_aug{k}_SwinIR_large.png" for k in range(1, 4)]
            names += [f"{stem}_page_1_image_{n}_{k}_SwinIR_large.png" for k in range(2)]
            for name in names:
                Image.new("RGB", (4, 4)).save(folder / name)
    return root


def groups_by_split(rows: list[dict[str, str]]) -> dict[str, set[str]]:
    splits = defaultdict(set)
    for r in rows:
        splits[r["group"]].add(r["split"])
    return splits


def test_spacenet_variants_share_a_split(tmp_path: Path) -> None:
    samples, classes = scan_image_folder(make_spacenet(tmp_path))
    assert classes == ["black hole", "galaxy", "planet"]
    rows = split_groups(samples, seed=3)
    splits = groups_by_split(rows)
    assert len(splits) == 30  # 10 originals per class, each with its 5 variants
    assert all(len(s) == 1 for s in splits.values()), "a group crosses splits: the split leaks"
    # stratified: every class appears in every split
    for cls in classes:
        assert {r["split"] for r in rows if r["label"] == cls} == {"train", "val", "test"}
    # and a per-file random split would have leaked on this data
    assert group_of("galaxy_page_1_image_3_aug2_SwinIR_large.png") == "galaxy_page_1_image_3"


def test_split_is_seeded(tmp_path: Path) -> None:
    samples, _ = scan_image_folder(make_spacenet(tmp_path))
    a, b, c = split_groups(samples, seed=1), split_groups(samples, seed=1), split_groups(samples, seed=2)
    assert a == b
    assert a != c


def test_own_variant_convention_and_regex() -> None:
    assert group_of("nebula_00003__aug2.png") == "nebula_00003"
    assert group_of("nebula_00003__gen1.png") == "nebula_00003"
    assert group_of("plain.png") == "plain"
    samples = [Sample(f"x/obs{i}_v{k}.png", "star") for i in range(6) for k in range(3)]
    rows = split_groups(samples, group_regex=r"^(?P<group>obs\d+)_v", seed=0)
    assert all(len(s) == 1 for s in groups_by_split(rows).values())
    assert len(groups_by_split(rows)) == 6


def test_bad_regex_and_fractions_are_user_errors() -> None:
    samples = [Sample("a.png", "star")]
    with pytest.raises(UsageError, match="not a valid regular expression"):
        split_groups(samples, group_regex="(")
    with pytest.raises(UsageError, match="fractions"):
        split_groups(samples, val=0.6, test=0.6)


def test_cli_writes_split_and_read_split_checks_files(tmp_path: Path) -> None:
    data = make_spacenet(tmp_path / "d", originals=4)
    out = tmp_path / "split.csv"
    result = CliRunner().invoke(cli, ["data", "split", str(data), "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "group", "split"]
    assert len(rows) == 3 * 4 * 6
    assert read_split(out, data) == rows
    (data / "SpaceNet.FLARE.imam_alam" / rows[0]["path"]).unlink()
    with pytest.raises(Exception, match="missing"):
        read_split(out, data)


def test_split_of_missing_folder_is_one_line_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "split", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    assert "DATA" in result.output and "does not exist" in result.output and "Traceback" not in result.output
