"""The FLARE merge: alpha/beta fractions per class, random and percentile selection."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from flare.runtime.foundation.errors import UsageError  # noqa: E402
from flare.training.data.folders import scan_image_folder  # noqa: E402
from flare.training.pipeline.merge import MergeConfig, merge  # noqa: E402
from flare.training.pipeline.stage1 import Stage1Config, run_stage1  # noqa: E402


def fake_stage2(stage1: Path, out: Path, outliers: set[str]) -> None:
    """Two 'generations' per original: a noisy copy of it, or pure junk for ``outliers``."""
    from flare.training.pipeline.stage2 import COLUMNS, output_for

    rng = np.random.default_rng(0)
    rows = []
    with open(stage1 / "stage1.csv", newline="") as f:
        originals = [r for r in csv.DictReader(f) if r["kind"] == "original"]
    for r in originals:
        src = np.asarray(Image.open(stage1 / r["output"]).convert("RGB"), dtype=np.int16)
        for k in range(2):
            rel = output_for(r["output"], k)
            if rel in outliers:
                img = np.full_like(src, 255)
                img[::2] = 0
            else:
                img = np.clip(src + rng.integers(-8, 8, src.shape), 0, 255)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.astype(np.uint8)).save(out / rel)
            rows.append({**{c: "" for c in COLUMNS}, "output": rel, "source": r["output"], "class": r["label"]})
    with open(out / "stage2.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def pools(sky_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    base = tmp_path_factory.mktemp("pools")
    run_stage1(sky_data / "hr", None, base / "s1", Stage1Config(size=32))
    outliers = {"galaxy/galaxy_00000__gen1.png", "galaxy/galaxy_00003__gen0.png", "star/star_00002__gen1.png"}
    fake_stage2(base / "s1", base / "s2", outliers)
    return base / "s1", base / "s2", outliers


def read_merge(out: Path) -> list[dict[str, str]]:
    with open(out / "merge.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_random_merge_takes_alpha_and_beta_per_class(pools, tmp_path: Path) -> None:
    s1, s2, _ = pools
    counts = merge(s1, s2, tmp_path / "m", MergeConfig(alpha=0.5, beta=0.5, select="random"))
    rows = read_merge(tmp_path / "m")
    per = Counter((r["label"], r["pool"]) for r in rows)
    for label, c in counts.items():
        assert per[(label, "original")] == 6  # real images always kept
        assert per[(label, "stage1")] == 15 == round(0.5 * c["stage1_pool"])
        assert per[(label, "stage2")] == 6 == round(0.5 * c["stage2_pool"])
    samples, classes = scan_image_folder(tmp_path / "m")  # a plain ImageFolder flare train reads
    assert len(samples) == len(rows) and len(classes) == 8
    groups: dict[str, set[str]] = {}
    for r in rows:
        groups.setdefault(r["group"], set()).add(r["split"])
    assert len(groups) == 48 and all(len(s) == 1 for s in groups.values())


def test_percentile_merge_drops_off_class_generations(pools, tmp_path: Path) -> None:
    s1, s2, outliers = pools
    merge(s1, s2, tmp_path / "p", MergeConfig(alpha=0.0, beta=1.0, select="percentile", band=(0.0, 100.0)))
    kept = {r["path"] for r in read_merge(tmp_path / "p") if r["pool"] == "stage2"}
    assert not kept & outliers, "junk generations survived the percentile selection"
    assert len(kept) >= 96 - len(outliers) - 24  # most on-class generations stay
    merge(s1, s2, tmp_path / "r", MergeConfig(alpha=0.0, beta=1.0, select="random"))
    assert outliers <= {r["path"] for r in read_merge(tmp_path / "r") if r["pool"] == "stage2"}


def test_merge_carries_a_given_split(pools, sky_data: Path, tmp_path: Path) -> None:
    from flare.training.data.splits import split_groups, write_split

    s1, s2, _ = pools
    samples, _ = scan_image_folder(sky_data / "hr")
    original_split = split_groups(samples, seed=9)
    write_split(original_split, tmp_path / "split.csv")
    merge(s1, s2, tmp_path / "m", MergeConfig(), split=tmp_path / "split.csv")
    want = {r["group"]: r["split"] for r in original_split}
    assert all(r["split"] == want[r["group"]] for r in read_merge(tmp_path / "m"))


def test_bad_fractions_are_refused(pools, tmp_path: Path) -> None:
    s1, s2, _ = pools
    with pytest.raises(UsageError, match="fractions"):
        merge(s1, s2, tmp_path / "x", MergeConfig(alpha=1.5))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="stage2.csv"):
        merge(s1, tmp_path / "empty", tmp_path / "x")


def test_merge_command_writes_a_trainable_split(pools, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flare.cli import cli
    from flare.training.data.splits import read_split

    s1, s2, _ = pools
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, ["augment", "merge", "--stage1", str(s1), "--stage2", str(s2), "--out", str(out),
                                      "--select", "percentile", "--alpha", "0.2"])
    assert result.exit_code == 0, result.output
    rows = read_split(out / "merge.csv", out)  # every listed file exists under the merged tree
    assert {r["pool"] for r in rows} == {"original", "stage1", "stage2"}
    assert f"flare train {out}" in result.output


def test_merge_never_harms_its_inputs_or_files_it_did_not_write(pools, tmp_path: Path) -> None:
    """The reported case (--out equal to --stage1 deleted a stage-1 image) and its relatives."""
    from click.testing import CliRunner

    from flare.cli import cli
    from flare.runtime.foundation.errors import FlareError

    s1, s2, _ = pools
    before = {p: p.read_bytes() for p in s1.rglob("*") if p.is_file()}
    for out in (s1, s1 / "merged"):
        result = CliRunner().invoke(cli, ["augment", "merge", "--stage1", str(s1), "--stage2", str(s2),
                                          "--out", str(out)])
        assert result.exit_code == 2 and "--stage1" in result.stderr and "Traceback" not in result.output
        with pytest.raises(UsageError, match="--stage1"):
            merge(s1, s2, out)  # the library refuses too
    assert {p: p.read_bytes() for p in s1.rglob("*") if p.is_file()} == before

    # a file of the user's where a merge would link an image is refused, not replaced
    out = tmp_path / "merged"
    merge(s1, s2, out, MergeConfig(alpha=1.0, beta=1.0, select="random"))
    listed = read_merge(out)
    mine = out / listed[0]["path"]
    (out / "merge.csv").unlink()  # the folder's images are no longer known to be the merge's
    mine.unlink()
    mine.write_bytes(b"my own file")
    with pytest.raises(FlareError, match="was not written by a merge"):
        merge(s1, s2, out, MergeConfig(alpha=1.0, beta=1.0, select="random"))
    assert mine.read_bytes() == b"my own file"


def test_a_smaller_merge_removes_only_its_own_earlier_picks(pools, tmp_path: Path) -> None:
    s1, s2, _ = pools
    out = tmp_path / "merged"
    merge(s1, s2, out, MergeConfig(alpha=1.0, beta=1.0, select="random"))
    (out / "notes.txt").write_text("mine")
    merge(s1, s2, out, MergeConfig(alpha=0.2, beta=0.2, select="random"))
    listed = {r["path"] for r in read_merge(out)}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == listed  # the dropped picks are gone, so the folder is the training set
    assert (out / "notes.txt").read_text() == "mine"
