"""Damaged or foreign artefacts: every loader refuses them with one line of our own.

Each case damages a copy of a real artefact (a truncated file, random bytes, valid data of
the wrong shape, a file made for another model) and checks that the loader raises
:class:`ArtifactError` (``BundleError`` for bundles) whose single-line message names the file
and says what to do, and, through the CLI, that the user sees exactly that line (exit 1, no
traceback). Fixtures are shared by the session, so every test damages its own copy.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner, Result  # noqa: E402

from bundle_edits import edited_bundle
from flare.cli import cli  # noqa: E402
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.runs import ClassifierRun, ClassifierTraining, DiffusionTraining, SRRun, SRTraining
from flare.runtime.foundation.errors import ArtifactError, BundleError  # noqa: E402
from flare.training.checkpoints import EpochLog, load_state, restore_parts, save_weights  # noqa: E402
from flare.training.classifiers.models import create_classifier, load_weights  # noqa: E402
from flare.training.classifiers.train import build_from_run, train  # noqa: E402

RESUME_AFRESH = "re-run without --resume"


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut ``path`` as a killed copy or a full disk would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def random_bytes(path: Path, size: int = 4096) -> Path:
    """Replace ``path`` by bytes that are no format at all (seeded: which error torch raises
    depends on the first bytes, so the tests only rely on what every such error shares)."""
    path.write_bytes(random.Random(size).randbytes(size))
    return path


def copy_run(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def assert_one_line(exc: pytest.ExceptionInfo[BaseException], *names: str) -> str:
    """The refusal is one line, names every part of ``names``, and carries none of torch's advice."""
    message = str(exc.value)
    assert "\n" not in message, message
    assert "weights_only" not in message and "Traceback" not in message, message
    for name in names:
        assert name in message, message
    return message


def assert_cli_error(result: Result, *names: str) -> str:
    """Exit 1 and exactly one ``Error:`` line on stderr, naming ``names``; no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").endswith(errors[0]), result.stderr  # nothing printed after the error
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def resume_config(sky_data: Path, epochs: int) -> ClassifierTraining:
    """Settings of the ``trained_run`` fixture (a resume reads the rest from its run.json)."""
    return ClassifierTraining(model="resnet18", data=str(sky_data / "hr"), epochs=epochs, batch=16, lr=1e-3,
                              input_size=32)


# --- classifier training state and weights -----------------------------------------------------


def test_cli_resume_with_truncated_train_state(trained_run: Path, sky_data: Path, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    truncate(run / "train_state.pt")
    result = CliRunner().invoke(cli, ["train", str(sky_data / "hr"), "--model", "resnet18", "--out", str(run),
                                      "--resume"])
    assert RESUME_AFRESH in assert_cli_error(result, str(run / "train_state.pt"))


def _state_with_epoch_only(path: Path) -> None:
    torch.save({"epoch": 0}, path)


def _state_of_numpy_objects(path: Path) -> None:
    torch.save({"epoch": 0, "optimizer": np.zeros(3)}, path)  # torch's refusal is pages of weights_only advice


@pytest.mark.parametrize("damage, says", [
    (lambda p: random_bytes(p), "start the run afresh"),
    (lambda p: p.write_bytes(b""), "truncated"),
    (lambda p: p.write_text("a text file, not a checkpoint"), "not a PyTorch file"),
    (_state_of_numpy_objects, "refusing to unpickle"),
    (lambda p: torch.save([1, 2, 3], p), "records no finished epoch"),
    (_state_with_epoch_only, "no 'optimizer' entry"),
], ids=["random-bytes", "empty", "text", "numpy-objects", "a-list", "missing-keys"])
def test_resume_refuses_a_damaged_or_foreign_train_state(trained_run: Path, sky_data: Path, tmp_path: Path,
                                                          damage: Callable[[Path], object], says: str) -> None:
    run = copy_run(trained_run, tmp_path)
    damage(run / "train_state.pt")
    with pytest.raises(ArtifactError) as info:
        train(resume_config(sky_data, 2), run, resume=True)
    assert says in assert_one_line(info, str(run / "train_state.pt"), RESUME_AFRESH)


@pytest.mark.parametrize("damage", [truncate, random_bytes], ids=["truncated", "random-bytes"])
def test_resume_refuses_damaged_last_weights(trained_run: Path, sky_data: Path, tmp_path: Path,
                                             damage: Callable[[Path], Path]) -> None:
    run = copy_run(trained_run, tmp_path)
    damage(run / "last.safetensors")
    with pytest.raises(ArtifactError) as info:
        train(resume_config(sky_data, 2), run, resume=True)
    assert_one_line(info, str(run / "last.safetensors"), "not safetensors", "without --resume")


def test_resume_with_a_torn_metrics_line_finishes(trained_run: Path, sky_data: Path, tmp_path: Path) -> None:
    """All epochs are done, so the resume only reads the log, evaluates and writes results."""
    run = copy_run(trained_run, tmp_path)
    metrics = run / "metrics.jsonl"
    first = metrics.read_text()
    metrics.write_text(first + '{"epoch": 2, "train_lo')  # killed while writing epoch 2's row
    results = train(resume_config(sky_data, 1), run, resume=True)
    assert results["test_images"] > 0
    assert metrics.read_text() == first


def test_epoch_log_keeps_readable_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1}\n{"epoch": "2"}\n\xff\xfe not json\n[3]\n{"epoch": 2}\n{"epoch": 3, "lo')
    assert [r["epoch"] for r in EpochLog(path, keep=2).rows] == [1, 2]
    assert json.loads(path.read_text().splitlines()[-1]) == {"epoch": 2}  # the damage is gone from the file


def test_exported_weights_for_another_number_of_classes(trained_run: Path, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    save_weights(create_classifier("resnet18", 3, 32), run / "best.safetensors")
    with pytest.raises(ArtifactError) as info:
        build_from_run(run)
    message = assert_one_line(info, str(run / "best.safetensors"), "was trained for another model",
                              "8 classes", "re-train")
    assert "fc.weight is [3, 512] in the file, [8, 512] in the model" in message


def test_build_from_run_refuses_truncated_best_weights(trained_run: Path, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path)
    truncate(run / "best.safetensors")
    with pytest.raises(ArtifactError) as info:
        build_from_run(run)
    assert_one_line(info, str(run / "best.safetensors"), "re-train with 'flare train'")


def test_restore_parts_refuses_optimizer_state_of_another_model(tmp_path: Path) -> None:
    small, large = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    path = tmp_path / "train_state.pt"
    torch.save({"epoch": 0, "optimizer": torch.optim.Adam(large.parameters()).state_dict()}, path)
    with pytest.raises(ArtifactError) as info:
        restore_parts(load_state(path), {"optimizer": torch.optim.Adam(small.parameters())})
    assert_one_line(info, str(path), "optimizer state does not fit", RESUME_AFRESH)


@pytest.mark.parametrize("damage, says", [
    (lambda p: random_bytes(p), "imagenet.pth"),
    (lambda p: truncate(p), "truncated"),
    (lambda p: torch.save(torch.zeros(3), p), "not a state dict"),
], ids=["random-bytes", "truncated", "a-tensor"])
def test_weights_option_refuses_damaged_files(tmp_path: Path, damage: Callable[[Path], object], says: str) -> None:
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": create_classifier("resnet18", 1000).state_dict()}, path)
    damage(path)
    with pytest.raises(ArtifactError) as info:
        load_weights(create_classifier("resnet18", 8), path)
    assert says in assert_one_line(info, str(path), "re-download or re-save the checkpoint")


# --- run.json and manifest.json ----------------------------------------------------------------


JSON_DAMAGE = {
    "truncated": lambda p: truncate(p),
    "a-list": lambda p: p.write_text("[1, 2]"),
    "a-string": lambda p: p.write_text('"run"'),
    "wrong-types": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "inputs": "x", "train": 7})),
    "not-utf8": lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()),
    "a-folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", JSON_DAMAGE.values(), ids=JSON_DAMAGE.keys())
def test_run_json_damage_is_one_line(trained_run: Path, tmp_path: Path, damage: Callable[[Path], object]) -> None:
    shutil.copy(trained_run / "run.json", tmp_path / "run.json")
    damage(tmp_path / "run.json")
    with pytest.raises(ArtifactError) as info:
        ClassifierRun.load(tmp_path)
    assert_one_line(info, str(tmp_path / "run.json"), "re-create it with 'flare train'")


@pytest.mark.parametrize("damage", JSON_DAMAGE.values(), ids=JSON_DAMAGE.keys())
def test_manifest_damage_is_one_line(bundle: Path, tmp_path: Path, damage: Callable[[Path], object]) -> None:
    shutil.copy(bundle / "manifest.json", tmp_path / "manifest.json")
    damage(tmp_path / "manifest.json")
    with pytest.raises(BundleError) as info:
        Manifest.load(tmp_path, verify=False)
    assert_one_line(info, str(tmp_path / "manifest.json"), "re-export the bundle")


# --- a manifest that contradicts its ONNX model ----------------------------------------------


@pytest.mark.parametrize("command", ["info", "classify"])
def test_cli_refuses_a_manifest_whose_input_shape_was_edited(bundle: Path, sky_data: Path, tmp_path: Path,
                                                             command: str) -> None:
    pytest.importorskip("onnxruntime")
    edited = edited_bundle(bundle, tmp_path / "bundle", lambda m: m["inputs"][0].update(shape=["batch", 3, 64, 64]))
    image = next((sky_data / "lr").rglob("*.png"))
    result = CliRunner().invoke(cli, [command, str(edited), *([str(image)] if command == "classify" else [])])
    line = assert_cli_error(result, str(edited / "manifest.json"), "model.onnx", "re-export the bundle")
    assert "[batch,3,64,64] float32 but model.onnx has [batch,3,32,32] float32" in line
    assert result.stdout == ""


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["outputs"][0].update(name="probabilities"), "lists outputs ['probabilities'] but model.onnx has"),
    # (an edited input dtype is refused earlier, against the preprocessing: see test_export)
    (lambda m: m["outputs"][0].update(dtype="float16"), "float16 but model.onnx has [batch,8] float32"),
    (lambda m: m["outputs"][0].update(shape=["batch", "classes"]), "[batch,classes] float32 but model.onnx has"),
], ids=["renamed-output", "dtype", "symbolic-where-fixed"])
def test_runner_compares_manifest_with_the_model(bundle: Path, tmp_path: Path, edit: Callable[[dict], object],
                                                 says: str) -> None:
    pytest.importorskip("onnxruntime")
    from flare.runtime.tasks.classify import Classifier

    edited = edited_bundle(bundle, tmp_path / "bundle", edit)
    with pytest.raises(BundleError) as info:
        Classifier(edited)
    assert says in assert_one_line(info, str(edited / "manifest.json"), "re-export the bundle")


def test_a_manifest_may_fix_what_the_model_leaves_symbolic(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from flare.runtime.tasks.classify import Classifier

    edited = edited_bundle(bundle, tmp_path / "bundle", lambda m: m["inputs"][0].update(shape=[4, 3, 32, 32]))
    with Classifier(edited) as clf:
        assert clf.runner.is_active and clf.backend.startswith("onnxruntime")


# --- super-resolution checkpoints --------------------------------------------------------------


def test_sr_checkpoint_damage_is_one_line(tmp_path: Path) -> None:
    from flare.training.sr.swinir import CONFIGS, SwinIR
    from flare.training.sr.train import load_sr

    official = tmp_path / "swinir.pth"
    torch.save({"params_ema": SwinIR.from_config(CONFIGS["tiny_x4"]).state_dict()}, official)
    load_sr(official)  # the intact file loads
    for damage in (truncate, random_bytes):
        damaged = tmp_path / f"{damage.__name__}.pth"
        shutil.copy(official, damaged)
        damage(damaged)
        with pytest.raises(ArtifactError) as info:
            load_sr(damaged)
        assert_one_line(info, str(damaged), "re-download or re-save the checkpoint")
    foreign = tmp_path / "resnet.pth"
    torch.save(create_classifier("resnet18", 8).state_dict(), foreign)
    with pytest.raises(ArtifactError) as info:
        load_sr(foreign)
    assert_one_line(info, str(foreign), "is not a SwinIR checkpoint", "conv_first.weight")


def test_sr_run_weights_for_another_architecture(tmp_path: Path) -> None:
    from flare.training.sr.swinir import CONFIGS
    from flare.training.sr.train import build_sr, load_sr

    run = tmp_path / "sr_run"
    SRRun(train=SRTraining(data=str(tmp_path)), swinir=CONFIGS["tiny_x4"].to_dict(), bicubic_residual=True).save(run)
    save_weights(build_sr(CONFIGS["small_x4"], True), run / "best.safetensors")
    with pytest.raises(ArtifactError) as info:
        load_sr(run)
    assert_one_line(info, str(run / "best.safetensors"), "was trained for another model", "flare train-sr")
    truncate(run / "best.safetensors")
    with pytest.raises(ArtifactError) as info:
        load_sr(run)
    assert_one_line(info, str(run / "best.safetensors"), "not safetensors", "flare train-sr")


# --- diffusion runs ------------------------------------------------------------------------------


def diffusion_settings(data: Path) -> DiffusionTraining:
    """The smallest run that still has every part: 8 images at 32 px, one UNet epoch, one sampler step."""
    return DiffusionTraining(data=str(data), resolution=32, epochs=1, vae_epochs=0, batch=8, vae_batch=8,
                             sample_per_class=1, sample_steps=1, warmup_steps=2)


@pytest.fixture(scope="module")
def diffusion_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from flare.training.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("diffusion_data")
    synthesize(out, SynthConfig(per_class=1, size=32, seed=0))
    return out / "hr"


@pytest.fixture(scope="module")
def diffusion_run(diffusion_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flare.training.diffusion.train import train_diffusion

    run = tmp_path_factory.mktemp("diffusion") / "run"
    train_diffusion(diffusion_settings(diffusion_data), run, device="cpu")
    return run


@pytest.mark.parametrize("damage, names", [
    (lambda r: truncate(r / "unet" / "diffusion_pytorch_model.safetensors"), ["unet", "diffusion_pytorch_model"]),
    (lambda r: truncate(r / "vae" / "diffusion_pytorch_model.safetensors"), ["vae", "diffusion_pytorch_model"]),
    (lambda r: truncate(r / "unet" / "config.json"), ["unet/config.json"]),
    (lambda r: (r / "scheduler" / "scheduler_config.json").write_text("[]"), ["scheduler_config.json"]),
    (lambda r: shutil.copy(r / "vae" / "diffusion_pytorch_model.safetensors",
                           r / "unet" / "diffusion_pytorch_model.safetensors"), ["unet", "another model"]),
], ids=["unet-weights", "vae-weights", "unet-config", "scheduler-config", "weights-of-another-model"])
def test_load_diffusion_refuses_a_damaged_folder(diffusion_run: Path, tmp_path: Path,
                                                 damage: Callable[[Path], object], names: list[str]) -> None:
    from flare.training.diffusion.model import load_diffusion

    run = copy_run(diffusion_run, tmp_path)
    damage(run)
    with pytest.raises(ArtifactError) as info:
        load_diffusion(run)
    assert_one_line(info, str(run), *names, "re-train it with 'flare train-diffusion'")


@pytest.mark.parametrize("part", ["train_state.pt", "last.safetensors"])
def test_diffusion_resume_refuses_damaged_training_state(diffusion_run: Path, diffusion_data: Path,
                                                         tmp_path: Path, part: str) -> None:
    from flare.training.diffusion.train import train_diffusion

    run = copy_run(diffusion_run, tmp_path)
    truncate(run / "training" / part)
    with pytest.raises(ArtifactError) as info:
        train_diffusion(diffusion_settings(diffusion_data), run, resume=True, device="cpu")
    assert_one_line(info, str(run / "training" / part), RESUME_AFRESH)


def test_diffusion_run_that_failed_after_training_is_finished_by_resume(
        diffusion_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while writing the final grid: ``--resume`` writes the grid and the log, trains nothing."""
    import flare.training.diffusion.train as diffusion_train

    run = tmp_path / "run"
    real_save_grid = diffusion_train.save_grid

    def disk_full_on_the_last_grid(images: np.ndarray, rows: int, labels: list[str], path: Path) -> None:
        if path.name.endswith("_variations.png"):
            raise OSError(28, "No space left on device", str(path))
        real_save_grid(images, rows, labels, path)

    monkeypatch.setattr(diffusion_train, "save_grid", disk_full_on_the_last_grid)
    with pytest.raises(OSError, match="No space left"):
        diffusion_train.train_diffusion(diffusion_settings(diffusion_data), run, device="cpu")
    trained = (run / "training" / "last.safetensors").read_bytes()
    assert not (run / "samples" / "epoch_0001_variations.png").exists()

    monkeypatch.setattr(diffusion_train, "save_grid", real_save_grid)
    summary = diffusion_train.train_diffusion(diffusion_settings(diffusion_data), run, resume=True, device="cpu")
    assert (run / "samples" / "epoch_0001_variations.png").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and rows[0]["samples"][-1] == "samples/epoch_0001_variations.png"
    assert summary["last"] == rows[0]
    assert (run / "training" / "last.safetensors").read_bytes() == trained  # finished, not trained again
