"""One artefact format: typed, versioned save / load for runs and bundles, and bundle checksums."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flare.cli import cli
from flare.runtime.core.artifact import identify, sha256
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.preprocess import PreprocessSpec, StretchSpec
from flare.runtime.core.runs import ClassifierRun, ClassifierTraining, Conditioner, DiffusionRun, DiffusionTraining, SRRun, SRTraining
from flare.runtime.foundation.errors import ArtifactError, BundleError


def classifier_run() -> ClassifierRun:
    return ClassifierRun(train=ClassifierTraining(model="resnet18", data="/data", input_size=64),
                         classes=["comet", "star"], macro_of={"comet": "Cosmic Phenomena", "star": "Stellar Objects"},
                         label_map={"comet": "comet", "star": "star"},
                         preprocessing=PreprocessSpec(size=64, stretch=StretchSpec(interval="zscale")))


ARTIFACTS = [
    classifier_run(),
    SRRun(train=SRTraining(data="/hr", arch="small_x4"), swinir={"scale": 4, "depths": [2, 2]}, bicubic_residual=True),
    DiffusionRun(train=DiffusionTraining(data="/s1", resolution=32), image_mode="channels", image_cond_cells=4,
                 vae_epochs=2, conditioner=Conditioner(kind="class_embedding", classes=["star"],
                                                      prompts=["An image of star in space"], dim=64, tokens=4)),
]


@pytest.mark.parametrize("artifact", ARTIFACTS, ids=lambda a: a.KIND)
def test_save_load_round_trip_keeps_types(artifact, tmp_path: Path) -> None:
    artifact.save(tmp_path)
    back = type(artifact).load(tmp_path)
    assert back == artifact and type(back.train) is type(artifact.train)
    assert identify(tmp_path) is type(artifact)
    raw = json.loads((tmp_path / artifact.FILE).read_text())
    assert raw["artifact"] == artifact.KIND and raw["version"] == artifact.VERSION


def test_nested_types_are_rebuilt(tmp_path: Path) -> None:
    classifier_run().save(tmp_path)
    back = ClassifierRun.load(tmp_path)
    assert isinstance(back.preprocessing, PreprocessSpec) and isinstance(back.preprocessing.stretch, StretchSpec)
    assert back.preprocessing.mean == PreprocessSpec().mean and isinstance(back.preprocessing.mean, tuple)
    assert back.preprocessing.stretch.interval == "zscale"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(version=2), r"newer than this flare-edge reads \(1\); upgrade flare-edge"),
    (lambda d: d.update(version=0), "older than this flare-edge reads .* re-create it with 'flare train'"),
    (lambda d: d.update(artifact="sr-run"), "is a super-resolution training run, not a classifier training run"),
    (lambda d: d.update(artifact="teapot"), "of unknown kind 'teapot'"),
    (lambda d: d["train"].update(epoch=3), r"train has unknown field\(s\) epoch"),
    (lambda d: d["train"].update(batch="64"), "train.batch must be int"),
    (lambda d: d.pop("classes"), r"lacks field\(s\) classes"),
    (lambda d: d.clear() or d.update({"format": "flare-run/1"}), r"earlier flare-edge \(format 'flare-run/1'\)"),
])
def test_refusals_name_the_file_and_what_to_do(tmp_path: Path, edit, message: str) -> None:
    path = classifier_run().save(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message) as info:
        ClassifierRun.load(tmp_path)
    assert str(path) in str(info.value)


def test_loading_the_wrong_kind_of_folder_says_what_it_is(tmp_path: Path) -> None:
    ARTIFACTS[1].save(tmp_path / "sr")
    with pytest.raises(ArtifactError, match="is a super-resolution training run, not a classifier"):
        ClassifierRun.load(tmp_path / "sr")
    with pytest.raises(BundleError, match="is a super-resolution training run, not a bundle"):
        Manifest.load(tmp_path / "sr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="make one with 'flare train-diffusion'"):
        DiffusionRun.load(tmp_path / "empty")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "run.json").write_text('{"artifact": ')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        SRRun.load(tmp_path / "damaged")


def test_save_refuses_what_load_would_refuse(tmp_path: Path) -> None:
    bad = classifier_run()
    bad.macro_of = {}
    with pytest.raises(ArtifactError, match="macro class"):
        bad.save(tmp_path)
    assert not (tmp_path / "run.json").exists()


# --- bundle checksums ---------------------------------------------------------------------


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    return out


def test_manifest_records_every_file(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    for entry in manifest.files.values():
        assert entry.sha256 == sha256(bundle / entry.path)
        assert entry.bytes == (bundle / entry.path).stat().st_size


def test_changed_or_truncated_model_is_refused_by_name(bundle: Path, tmp_path: Path) -> None:
    changed = copy_bundle(bundle, tmp_path / "changed")
    model = changed / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx differs .*sha256 mismatch"):
        Manifest.load(changed)
    truncated = copy_bundle(bundle, tmp_path / "truncated")
    model = truncated / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"model\.onnx is 1000 bytes .* truncated"):
        Manifest.load(truncated)
    result = CliRunner().invoke(cli, ["classify", str(truncated), str(model)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "truncated" in result.output
