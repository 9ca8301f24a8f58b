"""``flare data stellarium``: Stellarium's photos classed by its own catalogue, Messier held out.

Everything but the ``realdata`` test runs on a fake Stellarium folder (tests/stellarium_fakes.py)
written in the real formats, so the suite needs no stellarium-data package.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from flare.cli import cli
from flare.training.data.stellarium import CLASS_OF_TYPE, DEFAULT_DIR
from flare.training.data.stellarium_catalog import TYPE_NAMES, read_catalogue
from stellarium_fakes import make_fake_stellarium, qstring, record, write_catalog


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_stellarium(tmp_path_factory.mktemp("stellarium") / "nebulae")


@pytest.fixture(scope="module")
def built(fake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "set"
    result = CliRunner().invoke(cli, ["data", "stellarium", str(fake), "--out", str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    return out


def read_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "stellarium.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def messier_of(catalogue_dir: Path) -> dict[str, int | None]:
    """object designation set (as the CSV writes it) -> the record's Messier number."""
    return {"; ".join(o.designations): o.messier for o in read_catalogue(catalogue_dir / "catalog.dat").objects}


def test_reader_decodes_the_layout(fake: Path) -> None:
    catalogue = read_catalogue(fake / "catalog.dat")
    assert (catalogue.version, catalogue.edition, len(catalogue.objects)) == ("3.16", "test", 11)
    m31 = catalogue.index()[("NGC", "224")][0]
    assert m31.messier == 31 and m31.designations == ["M 31", "NGC 224", "PGC 2557"]
    assert m31.type_name == "galaxy" and abs(m31.ra - 10.68) < 1e-9 and abs(m31.major - 3.0) < 1e-9
    assert catalogue.index()[("PK", "096+29.1")][0].numbers["NGC"] == "6543"


def test_every_stellarium_type_has_one_mapping() -> None:
    assert set(CLASS_OF_TYPE) == set(TYPE_NAMES) and len(TYPE_NAMES) == 37
    assert {CLASS_OF_TYPE[t] for t in ("galaxy", "interacting galaxy", "cluster of galaxies")} == {"galaxy"}
    assert {CLASS_OF_TYPE[t] for t in ("planetary nebula", "dark nebula", "HII region", "supernova remnant",
                                       "reflection nebula", "cluster associated with nebulosity")} == {"nebula"}
    assert {CLASS_OF_TYPE[t] for t in ("open star cluster", "globular star cluster", "star cluster")} == {"star"}
    assert CLASS_OF_TYPE["quasar"] is None and CLASS_OF_TYPE["object of unknown nature"] is None


def test_output_rows_classes_and_no_messier(fake: Path, built: Path) -> None:
    rows = read_csv(built)
    by_file = {r["source_file"]: r for r in rows}
    # ngc224.png is M 31 by cross-identification, m42.png names a Messier object: neither is out
    assert "ngc224.png" not in by_file and "m42.png" not in by_file
    assert "p123.png" not in by_file and "lonely.png" not in by_file  # a quasar; nothing there
    assert {r["class"] for r in rows} == {"galaxy", "nebula", "star"}
    assert by_file["n7000.png"]["class"] == "nebula" and by_file["n7000.png"]["catalogue_type"] == "HII region"
    assert by_file["n7000.png"]["name"] == "North America Nebula"
    assert by_file["n869.png"]["class"] == "star" and by_file["n5139.png"]["class"] == "star"
    assert by_file["ic434.png"]["object_id"] == "IC_434" and by_file["ic434.png"]["class"] == "nebula"
    assert by_file["needle.png"]["match"] == "position" and by_file["needle.png"]["object_id"] == "NGC_4565"
    assert by_file["n7814.png"]["match"] == "name"  # its quad has negative RA corners
    assert by_file["ic434.png"]["credit"] == "Observer 6" and by_file["n869.png"]["credit"] == "Observer 4"
    assert by_file["n7000.png"]["info_url"] == "https://example.org/2"
    # no output is a Messier object, checked against the catalogue's own M field
    messier = messier_of(fake)
    assert all(messier[r["designations"]] is None for r in rows)
    assert not any(d.startswith("M ") for r in rows for d in r["designations"].split("; "))
    record_ = json.loads((built / "stellarium.json").read_text())
    assert record_["left_out"] == {"messier": 2, "type: quasar": 1, "unmatched": 1}
    assert record_["count"] == len(rows) == 10 and record_["catalogue_version"] == "3.16"
    assert record_["per_class"] == {"galaxy": 3, "nebula": 4, "star": 3}


def test_images_and_lr_twins(built: Path) -> None:
    rows = read_csv(built)
    for row in rows:
        hr_path = built / row["path"]
        lr_path = built / "lr" / Path(row["path"]).relative_to("hr")
        with Image.open(hr_path) as hr, Image.open(lr_path) as lr:
            assert hr.size == (32, 32) and hr.mode == "RGB"
            assert lr.size == (8, 8)
    assert sorted(p.name for p in (built / "hr" / "nebula").iterdir())[:2] == ["IC_434__1.png", "NGC_6543__1.png"]
    assert (built / "hr" / "nebula" / "NGC_7000__2.png").is_file()


def test_rerun_is_byte_identical(fake: Path, built: Path) -> None:
    before = {p.relative_to(built): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, ["data", "stellarium", str(fake), "--out", str(built), "--size", "32"])
    assert result.exit_code == 0, result.output
    after = {p.relative_to(built): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    assert before == after
    assert not built.with_name(built.name + ".partial").exists()


def test_split_keeps_each_object_in_one_split(built: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.csv"
    result = CliRunner().invoke(cli, ["data", "split", str(built / "hr"), "--out", str(split)])
    assert result.exit_code == 0, result.output
    with open(split, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    splits_of: dict[str, set[str]] = {}
    for row in rows:
        splits_of.setdefault(Path(row["path"]).name.split("__")[0], set()).add(row["split"])
        assert row["group"] == Path(row["path"]).name.split("__")[0]
    assert all(len(s) == 1 for s in splits_of.values())
    assert len([r for r in rows if r["group"] == "NGC_7000"]) == 2


def test_missing_installation_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["data", "stellarium", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and missing.output.strip().count("\n") == 0
    assert str(tmp_path / "nope") in missing.output and "sudo apt-get install stellarium-data" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "textures.json").write_text("{}")
    lacking = runner.invoke(cli, ["data", "stellarium", str(empty), "--out", str(tmp_path / "o")])
    assert lacking.exit_code == 1 and lacking.output.strip().count("\n") == 0
    assert "catalog.dat" in lacking.output and "sudo apt-get install stellarium-data" in lacking.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["not gzip", "truncated", "wrong layout"])
def test_damaged_catalog_is_one_line_naming_it(fake: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "nebulae"
    folder.mkdir()
    for name in ("textures.json", "names.dat"):
        (folder / name).write_bytes((fake / name).read_bytes())
    catalog = folder / "catalog.dat"
    if damage == "not gzip":
        catalog.write_bytes(b"not a catalogue")
    elif damage == "truncated":
        catalog.write_bytes(gzip.compress(gzip.decompress((fake / "catalog.dat").read_bytes())[:-7]))
    else:  # a record with a QString where a number belongs: an RA off the sky
        write_catalog(catalog, [qstring("x" * 40) + record(1, 10.0, 10.0, 0)])
    result = CliRunner().invoke(cli, ["data", "stellarium", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0, result.output
    assert str(catalog) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_foreign_output_folder_is_refused(fake: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["data", "stellarium", str(fake), "--out", str(out)])
    assert result.exit_code == 1 and "stellarium.json" in result.output
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.realdata
@pytest.mark.skipif(not (DEFAULT_DIR / "catalog.dat").is_file(),
                    reason=f"stellarium-data is not installed ({DEFAULT_DIR}): sudo apt-get install stellarium-data")
def test_real_stellarium_photos(tmp_path: Path) -> None:
    out = tmp_path / "real"
    result = CliRunner().invoke(cli, ["data", "stellarium", "--out", str(out), "--size", "64"])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    counts = {c: sum(r["class"] == c for r in rows) for c in ("galaxy", "nebula", "star")}
    assert len(rows) >= 300 and all(n >= 50 for n in counts.values()), counts
    messier = messier_of(DEFAULT_DIR)
    assert all(messier[r["designations"]] is None for r in rows)
    assert not any(r["source_file"].lower().startswith("m") and r["source_file"][1:2].isdigit() for r in rows)
    record_ = json.loads((out / "stellarium.json").read_text())
    assert record_["left_out"]["messier"] >= 100  # Stellarium ships a photo of nearly every Messier object
    assert sum(1 for _ in (out / "lr").rglob("*.png")) == len(rows)
