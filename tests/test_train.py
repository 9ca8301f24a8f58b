"""Training runs: checkpoints, resume, metrics, confusion matrix, weights files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from flare.runtime.core.runs import ClassifierRun, ClassifierTraining
from flare.runtime.foundation.errors import FlareError, UsageError  # noqa: E402
from flare.training.classifiers.models import create_classifier, load_weights  # noqa: E402
from flare.training.classifiers.train import train  # noqa: E402


def config(data: Path, epochs: int, **changes: object) -> ClassifierTraining:
    return ClassifierTraining(model="resnet18", data=str(data / "hr"), epochs=epochs, batch=16, lr=1e-3, input_size=32,
                              seed=7, **changes)  # type: ignore[arg-type]


def test_resume_continues_exactly(sky_data: Path, tmp_path: Path) -> None:
    """Two epochs in one go equal one epoch, a stop, and a resumed second epoch, with the
    random flips and class-balanced draws too (their randomness comes from (seed, epoch))."""
    straight = tmp_path / "straight"
    train(config(sky_data, 2, flips=True, balance=True), straight)
    resumed = tmp_path / "resumed"
    train(config(sky_data, 1, flips=True, balance=True), resumed)
    first = load_file(str(resumed / "last.safetensors"))
    train(config(sky_data, 2), resumed, resume=True)  # a resume keeps the run's own settings
    assert ClassifierRun.load(resumed).train.flips and ClassifierRun.load(resumed).train.balance
    a, b = load_file(str(straight / "last.safetensors")), load_file(str(resumed / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")
    assert any(not torch.equal(first[k], b[k]) for k in b if b[k].is_floating_point()), "resume did not train"
    epochs = [json.loads(line)["epoch"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_run_folder_contents(trained_run: Path) -> None:
    run = ClassifierRun.load(trained_run)
    assert run.classes[1] == "black hole" and len(run.classes) == 8
    assert run.preprocessing.size == 32 and run.train.input_size == 32
    row = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"train_loss", "val_acc", "val_macro_f1"} <= set(row)
    cm = json.loads((trained_run / "confusion_matrix.json").read_text())
    assert len(cm["matrix"]) == 8 and sum(map(sum, cm["matrix"])) == json.loads(
        (trained_run / "results.json").read_text())["test_images"]
    assert (trained_run / "confusion_matrix.png").stat().st_size > 1000
    for name in ("best.safetensors", "last.safetensors", "train_state.pt", "split.csv"):
        assert (trained_run / name).is_file()


def test_existing_run_needs_resume_flag(trained_run: Path, sky_data: Path) -> None:
    with pytest.raises(UsageError, match="--resume"):
        train(config(sky_data, 1), trained_run)


def test_macro_labels(sky_data: Path, tmp_path: Path) -> None:
    cfg = config(sky_data, 1)
    cfg.level = "macro"
    train(cfg, tmp_path / "macro")
    saved = ClassifierRun.load(tmp_path / "macro")
    assert saved.classes == ["Astronomical Patterns", "Celestial Bodies", "Cosmic Phenomena", "Stellar Objects"]
    assert saved.label_map["black hole"] == "Cosmic Phenomena"


def test_local_weights_skip_the_old_head_and_refuse_other_architectures(tmp_path: Path) -> None:
    src = create_classifier("resnet18", 1000)
    path = tmp_path / "imagenet_like.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    model = create_classifier("resnet18", 8)
    info = load_weights(model, path)
    assert info["missing"] == 2  # fc.weight and fc.bias: the new 8-class head
    torch.testing.assert_close(model.state_dict()["conv1.weight"], src.state_dict()["conv1.weight"])
    other = tmp_path / "other.pth"
    torch.save(create_classifier("mobilenetv3_small_100", 8).state_dict(), other)
    with pytest.raises(FlareError, match="another architecture"):
        load_weights(create_classifier("resnet18", 8), other)


def test_googlenet_and_unknown_names() -> None:
    net = create_classifier("googlenet", 8)
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 8)
    with pytest.raises(UsageError, match="unknown model"):
        create_classifier("not_a_model_xyz", 8)


def test_resume_refuses_a_state_file_that_would_run_code(trained_run: Path, sky_data: Path, tmp_path: Path) -> None:
    import pickle
    import shutil

    from flare.runtime.foundation.errors import FlareError

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):  # unpickling this calls Path.touch(marker)
            return (Path.touch, (marker,))

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with open(run / "train_state.pt", "wb") as f:
        pickle.dump({"epoch": 0, "optimizer": Payload()}, f)
    with pytest.raises(FlareError, match="refusing to unpickle"):
        train(config(sky_data, 2), run, resume=True)
    assert not marker.exists()
    with open(tmp_path / "probe.pkl", "wb") as f:  # the payload does run when unpickled plainly
        pickle.dump(Payload(), f)
    with open(tmp_path / "probe.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_confusion_matrix_is_drawn_with_matplotlib(trained_run: Path) -> None:
    from PIL import Image

    with Image.open(trained_run / "confusion_matrix.png") as png:
        assert png.info.get("Software", "").startswith("Matplotlib")
        assert png.width > 400


def test_flips_and_balance_change_what_an_epoch_sees(sky_data: Path, tmp_path: Path) -> None:
    plain, augmented = tmp_path / "plain", tmp_path / "augmented"
    train(config(sky_data, 1), plain)
    train(config(sky_data, 1, flips=True, balance=True), augmented)
    a, b = load_file(str(plain / "last.safetensors")), load_file(str(augmented / "last.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_class_balanced_draws_every_class_equally_often() -> None:
    from flare.runtime.core.preprocess import PreprocessSpec
    from flare.training.classifiers.train import ImageDataset, class_balanced

    rows = [{"path": f"{i}.png", "label": "galaxy" if i < 90 else "star"} for i in range(100)]
    data = ImageDataset(rows, Path("."), PreprocessSpec(size=8), {"galaxy": 0, "star": 1}, cache=False)
    draws = [rows[i]["label"] for _ in range(20) for i in class_balanced(data, torch.Generator().manual_seed(0))]
    assert len(draws) == 2000
    assert 0.45 < draws.count("star") / len(draws) < 0.55  # 10% of the rows, half of the draws


def test_dihedral_gives_the_eight_symmetries_of_a_square() -> None:
    from flare.training.symmetry import dihedral, random_dihedral

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    images = [dihedral(x, [c, c]) for c in range(8)]
    assert len({tuple(im[0].flatten().tolist()) for im in images}) == 8  # all different
    assert all(torch.equal(im.flatten(1).sort().values, x.flatten(1).sort().values) for im in images)  # same pixels
    torch.testing.assert_close(dihedral(x, [1, 1]), torch.rot90(x, 1, dims=(-2, -1)))
    torch.testing.assert_close(dihedral(x, [4, 4]), torch.flip(x, dims=(-1,)))
    drawn = random_dihedral(x, torch.Generator().manual_seed(0))
    assert any(torch.equal(drawn[0], im[0]) for im in images) and drawn.shape == x.shape
