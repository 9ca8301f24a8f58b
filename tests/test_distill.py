"""``flare distill``: the loss, the teacher-logit cache, resume, the exported student and the mistakes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from flare.cli import cli  # noqa: E402
from flare.runtime.core.runs import ClassifierRun, SRRun, SRTraining  # noqa: E402
from flare.training.distill import teacher as teacher_module  # noqa: E402
from flare.training.distill.loss import distillation_loss  # noqa: E402
from flare.training.distill.trainer import DistillSettings, distill  # noqa: E402

#: Small and quick: a 32 px resnet18 student, one image batch per step.
QUICK = dict(student="resnet18", epochs=1, batch=16, lr=1e-3, bench=False, seed=3)


def settings(sky_data: Path, teacher: Path, out: Path, cache: Path, **changes: object) -> DistillSettings:
    return DistillSettings(**{"data": sky_data / "hr", "teacher": teacher, "out": out, "cache": cache, **QUICK,
                              **changes})


@pytest.fixture
def inferences(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many images the teacher scored, call by call (the cache's misses)."""
    calls: list[int] = []
    real = teacher_module.infer

    def counted(teacher, root, paths):
        calls.append(len(paths))
        return real(teacher, root, paths)

    monkeypatch.setattr(teacher_module, "infer", counted)
    return calls


def test_loss_against_hand_computed_values() -> None:
    # One image, two classes. Student logits (0, 0): softmax(s / T) = (1/2, 1/2) at any T.
    # Teacher logits T * (ln 3, 0): softmax(t / T) = (3/4, 1/4). Label 0: CE = ln 2 = 0.693147.
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.75 * 0.405465 - 0.25 * 0.693147 = 0.130812.
    # loss = alpha * T^2 * 0.130812 + (1 - alpha) * 0.693147:
    cases = [(1.0, 0.5, 0.411980),   # 0.5 * 0.130812 + 0.5 * 0.693147
             (2.0, 0.25, 0.650672),  # 0.25 * 4 * 0.130812 + 0.75 * 0.693147
             (4.0, 1.0, 2.092992),   # 16 * 0.130812
             (3.0, 0.0, 0.693147)]   # the hard term alone
    student, label = torch.zeros(1, 2), torch.tensor([0])
    for temperature, alpha, expected in cases:
        teacher = torch.tensor([[temperature * math.log(3), 0.0]])
        got = float(distillation_loss(student, teacher, label, temperature, alpha))
        assert got == pytest.approx(expected, abs=2e-6), (temperature, alpha)
    # a batch is averaged: the first case twice gives the same loss
    pair = distillation_loss(torch.zeros(2, 2), torch.tensor([[math.log(3), 0.0]] * 2), torch.tensor([0, 0]), 1.0, 0.5)
    assert float(pair) == pytest.approx(0.411980, abs=2e-6)


def test_logits_are_cached_reused_and_invalidated(sky_data: Path, trained_run: Path, tmp_path: Path,
                                                  inferences: list[int]) -> None:
    cache = tmp_path / "cache"
    distill(settings(sky_data, trained_run, tmp_path / "a", cache))
    assert inferences == [48]  # every image of the split, once
    (file,) = cache.glob("teacher-*.npz")
    mtime = file.stat().st_mtime_ns
    # a second student, given other DATA: it learns from the teacher's own images and split
    # (a FLARE-augmented set when the teacher had one), so the logits are not computed again
    distill(settings(sky_data, trained_run, tmp_path / "b", cache, student="mobilenetv3_small_100",
                     data=sky_data / "lr"))
    assert inferences == [48] and file.stat().st_mtime_ns == mtime
    run = ClassifierRun.load(tmp_path / "b")
    assert run.train.data == ClassifierRun.load(trained_run).train.data and run.train.model == "mobilenetv3_small_100"
    assert (tmp_path / "b" / "split.csv").read_text() == (trained_run / "split.csv").read_text()
    record = run.distill
    assert record is not None and record.cache == str(file) and record.teacher_kind == "run"
    assert record.data == str((sky_data / "lr").resolve())

    # another teacher (weights changed by a hair): computed again, in another file
    changed = tmp_path / "teacher"
    shutil.copytree(trained_run, changed)
    weights = load_file(str(changed / "best.safetensors"))
    weights["fc.bias"] = weights["fc.bias"] + 0.01
    save_file(weights, str(changed / "best.safetensors"))
    teacher = teacher_module.open_teacher(changed, "cpu")
    rows = [str(p.relative_to(sky_data / "hr")) for p in sorted((sky_data / "hr").rglob("*.png"))]
    teacher_module.teacher_logits(teacher, sky_data / "hr", rows, cache)
    assert inferences == [48, 48] and len(list(cache.glob("teacher-*.npz"))) == 2

    # the same teacher on data with one image changed: computed again
    data = tmp_path / "data"
    shutil.copytree(sky_data / "hr", data)
    image = data / rows[0]
    image.write_bytes((sky_data / "hr" / rows[1]).read_bytes())
    teacher_module.teacher_logits(teacher, data, rows, cache)
    assert inferences == [48, 48, 48] and len(list(cache.glob("teacher-*.npz"))) == 3
    teacher_module.teacher_logits(teacher, sky_data / "hr", rows, cache)  # and the first data still hits
    assert inferences == [48, 48, 48]


def test_resume_continues_exactly(sky_data: Path, trained_run: Path, tmp_path: Path) -> None:
    """Two epochs in one go equal one epoch, a stop and a resumed second epoch (as flare train's)."""
    cache = tmp_path / "cache"
    distill(settings(sky_data, trained_run, tmp_path / "straight", cache, epochs=2))
    distill(settings(sky_data, trained_run, tmp_path / "resumed", cache, epochs=1))
    first = load_file(str(tmp_path / "resumed" / "last.safetensors"))
    distill(settings(sky_data, trained_run, tmp_path / "resumed", cache, epochs=2, resume=True))
    a, b = (load_file(str(tmp_path / run / "last.safetensors")) for run in ("straight", "resumed"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")
    assert any(not torch.equal(first[k], b[k]) for k in b if b[k].is_floating_point()), "resume did not train"
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_bundle_teacher_from_the_cli_and_the_student_exports(sky_data: Path, trained_run: Path, bundle: Path,
                                                             tmp_path: Path) -> None:
    out, cache = tmp_path / "student", tmp_path / "cache"
    result = CliRunner().invoke(cli, ["distill", str(sky_data / "hr"), "--teacher", str(bundle), "--student",
                                      "resnet18", "--out", str(out), "--split", str(trained_run / "split.csv"),
                                      "--epochs", "1", "--batch", "16", "--lr", "1e-3", "--temperature", "2",
                                      "--alpha", "0.7", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    assert "| agreement with the teacher |" in result.stdout and "| CPU images/s, fp32 bundle |" in result.stdout
    run = ClassifierRun.load(out)
    assert run.distill is not None and run.distill.teacher_kind == "bundle"
    assert (run.distill.temperature, run.distill.alpha, run.distill.scores) == (2.0, 0.7, "logits")
    assert run.distill.teacher == str(bundle.resolve()) and len(run.distill.teacher_sha256) == 64
    assert (out / "split.csv").read_text() == (trained_run / "split.csv").read_text()  # the teacher's split
    table = json.loads((out / "distill.json").read_text())
    assert set(table["student"]["per_class_accuracy"]) == set(run.classes) and table["test_images"] == 8
    assert table["teacher"]["cpu"]["fp32"]["images_per_second"] > 0  # the bundle teacher, timed as it is
    for precision in ("fp32", "int8"):
        assert table["student"]["cpu"][precision]["images_per_second"] > 0
    assert table["student"]["gflops"] > 0 and table["student"]["parameters"] > 10**6
    assert (out / "distill.md").read_text().startswith("Distillation: T = 2, alpha = 0.7")

    exported = CliRunner().invoke(cli, ["export", "classifier", str(out), "--out", str(tmp_path / "bundle")])
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["task"] == "classify" and manifest["labels"]["classes"] == run.classes


def two_class_data(sky_data: Path, tmp_path: Path) -> Path:
    """DATA with 2 of the 8 classes, for the classes-differ mistake."""
    data = tmp_path / "two"
    for name in ("galaxy", "star"):
        shutil.copytree(sky_data / "hr" / name, data / name)
    return data


@pytest.mark.parametrize("mistake, code, message", [
    (["--student", "not_a_model_xyz"], 2, "unknown model 'not_a_model_xyz'"),
    (["--temperature", "0"], 2, "--temperature"),
    (["--temperature", "-1"], 2, "--temperature"),
    (["--temperature", "nan"], 2, "is not a finite number"),
    (["--alpha", "1.5"], 2, "--alpha"),
    (["--alpha", "-0.1"], 2, "--alpha"),
    (["--alpha", "nan"], 2, "is not a finite number"),
    (["--teacher", "{sr_run}"], 2, "is a source for 'enhance'"),
    (["--teacher", "{sky}"], 2, "neither a classify bundle nor a classifier RUN"),
    (["{two}", "--teacher", "{bundle}"], 2, "the teacher's classes"),
    (["--teacher", "{damaged}"], 1, "run.json is not valid JSON"),
])
def test_mistakes_are_one_line_and_write_nothing(mistake: list[str], code: int, message: str, sky_data: Path,
                                                 trained_run: Path, bundle: Path, tmp_path: Path) -> None:
    sr_run = tmp_path / "sr"
    sr_run.mkdir()
    SRRun(train=SRTraining(data=str(sky_data)), swinir={}, bicubic_residual=True).save(sr_run)
    damaged = tmp_path / "damaged"
    shutil.copytree(trained_run, damaged)
    (damaged / "run.json").write_text("{not json")
    places = {"sr_run": sr_run, "sky": sky_data, "bundle": bundle, "two": two_class_data(sky_data, tmp_path),
              "damaged": damaged}
    args = {"data": str(sky_data / "hr"), "--teacher": str(trained_run), "--student": "resnet18"}
    rest = [a.format(**places) for a in mistake]
    if not rest[0].startswith("--"):
        args["data"] = rest.pop(0)
    for i in range(0, len(rest), 2):
        args[rest[i]] = rest[i + 1]
    out, cache = tmp_path / "out", tmp_path / "cache"
    line = [args.pop("data"), *[x for pair in args.items() for x in pair], "--out", str(out), "--cache", str(cache),
            "--epochs", "1", "--no-bench"]
    result = CliRunner().invoke(cli, ["distill", *line])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists() and not cache.exists()


def test_resume_of_a_plain_run_or_with_other_settings_is_refused(sky_data: Path, trained_run: Path,
                                                                  tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(trained_run, plain)
    base = ["distill", str(sky_data / "hr"), "--teacher", str(trained_run), "--student", "resnet18",
            "--cache", str(tmp_path / "cache"), "--no-bench", "--resume"]
    result = CliRunner().invoke(cli, [*base, "--out", str(plain)])
    assert result.exit_code == 2 and "is a 'flare train' run, not a distilled one" in result.output
    run = tmp_path / "run"
    distill(settings(sky_data, trained_run, run, tmp_path / "cache"))
    result = CliRunner().invoke(cli, [*base, "--out", str(run), "--alpha", "0.9"])
    assert result.exit_code == 2 and "--alpha 0.9 (the run has 0.5)" in result.output
