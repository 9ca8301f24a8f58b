"""A manifest edited by hand is not believed: its checksum, its internal consistency and its
agreement with the model are checked whenever a bundle is opened (``flare info`` included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundle_edits import edited_bundle
from flare.cli import cli
from flare.runtime.core.manifest import CHECKSUM_KEY, Manifest

pytest.importorskip("onnxruntime")


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_hand_edit_without_its_checksum_is_refused(bundle: Path, tmp_path: Path) -> None:
    edited = edited_bundle(bundle, tmp_path / "b", lambda m: m["labels"]["classes"].reverse(), seal=False)
    line = one_error_line(CliRunner().invoke(cli, ["info", str(edited)]))
    assert str(edited / Manifest.FILE) in line and CHECKSUM_KEY in line and "changed after export" in line


def test_a_manifest_without_a_checksum_is_refused(bundle: Path, tmp_path: Path) -> None:
    edited = edited_bundle(bundle, tmp_path / "b", lambda m: m.pop(CHECKSUM_KEY), seal=False)
    line = one_error_line(CliRunner().invoke(cli, ["info", str(edited)]))
    assert f"carries no {CHECKSUM_KEY}" in line and "re-export" in line


def test_the_checksum_ignores_key_order_and_indentation(bundle: Path, tmp_path: Path) -> None:
    import json

    copy = edited_bundle(bundle, tmp_path / "b", lambda m: None, seal=False)
    data = json.loads((copy / Manifest.FILE).read_text())
    (copy / Manifest.FILE).write_text(json.dumps(dict(reversed(list(data.items()))), indent=4))
    assert Manifest.load(copy).task == "classify"


def _drop_last_class(m: dict) -> None:
    m["labels"]["classes"].pop()


def _size(m: dict) -> None:
    m["preprocessing"]["size"] = 64


@pytest.mark.parametrize("edit, says", [
    (_drop_last_class, "has 8 classes but labels.classes names 7"),
    (_size, "the preprocessing makes 64 px images (NCHW) but the model input 'image' is ['batch', 3, 32, 32]"),
    (lambda m: m["preprocessing"].update(std=[0.2, 0.0, 0.2]), "std positive"),
    (lambda m: m["preprocessing"].update(std=[0.2, 0.2]), "one value per RGB channel"),
    (lambda m: m["preprocessing"].update(size=0), "size must be at least 1"),
    (lambda m: m["labels"].update(classes=[]), "non-empty"),
], ids=["labels-short", "size", "zero-std", "two-std", "zero-size", "no-classes"])
@pytest.mark.parametrize("command", ["info", "classify"])
def test_an_inconsistent_manifest_is_one_line_for_every_command(bundle: Path, sky_data: Path, tmp_path: Path,
                                                                edit: Callable[[dict], None], says: str,
                                                                command: str) -> None:
    edited = edited_bundle(bundle, tmp_path / "b", edit)
    image = next((sky_data / "hr").rglob("*.png"))
    args = [command, str(edited)] + ([str(image)] if command == "classify" else [])
    line = one_error_line(CliRunner().invoke(cli, args))
    assert says in line and "manifest.json" in line, line
