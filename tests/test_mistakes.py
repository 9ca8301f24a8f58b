"""Every user mistake is one line and an exit code, and no input is touched.

One table of realistic mistakes across every command, run through the real CLI. Each case
asserts the exit code the contract gives (1 for bad input, 2 for bad usage), exactly one
``Error:`` line on stderr naming the option or path at fault, no traceback, and that no file
outside the case's own output folder changed (every input file is hashed before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundle_edits import write_manifest
from flare.cli import cli


@dataclass(frozen=True)
class Case:
    """``args`` are formatted with the world's paths: ``{data}`` (HR ImageFolder), ``{lr}``,
    ``{run}``, ``{bundle}``, ``{out}`` (this case's own output folder, not hashed), ``{w}``
    (the world root). ``names`` must appear in the error line."""

    id: str
    args: str
    code: int
    names: str
    #: Only the error line on stderr (the mistake is caught before any work or log line).
    alone: bool = True
    skip: str = ""
    marks: tuple = field(default=())


ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

CASES = [
    # --- numeric options outside their range: usage errors naming the option -------------
    Case("synth-per-class-0", "data synth --out {out} --per-class 0", 2, "--per-class"),
    Case("synth-size-0", "data synth --out {out} --size 0", 2, "--size"),
    Case("synth-scale-0", "data synth --out {out} --scale 0", 2, "--scale"),
    Case("synth-seed-negative", "data synth --out {out} --seed -1", 2, "--seed"),
    Case("split-val-above-1", "data split {data} --out {out}/s.csv --val 1.5", 2, "--val"),
    Case("split-test-negative", "data split {data} --out {out}/s.csv --test -0.1", 2, "--test"),
    Case("train-batch-0", "train {data} --model resnet18 --out {out} --batch 0", 2, "--batch"),
    Case("train-epochs-0", "train {data} --model resnet18 --out {out} --epochs 0", 2, "--epochs"),
    Case("train-lr-negative", "train {data} --model resnet18 --out {out} --lr -1", 2, "--lr"),
    Case("train-workers-negative", "train {data} --model resnet18 --out {out} --workers -1", 2, "--workers"),
    Case("train-input-size-0", "train {data} --model resnet18 --out {out} --input-size 0", 2, "--input-size"),
    Case("train-sr-patch-0", "train-sr {data} --out {out} --patch 0", 2, "--patch"),
    Case("train-sr-scale-0", "train-sr {data} --out {out} --scale 0", 2, "--scale"),
    Case("train-sr-steps-0", "train-sr {data} --out {out} --steps-per-epoch 0", 2, "--steps-per-epoch"),
    Case("train-diffusion-sample-steps-0", "train-diffusion {data} --out {out} --sample-steps 0", 2,
         "--sample-steps"),
    Case("train-diffusion-resolution-4", "train-diffusion {data} --out {out} --resolution 4", 2, "--resolution"),
    Case("train-diffusion-vae-epochs-negative", "train-diffusion {data} --out {out} --vae-epochs -1", 2,
         "--vae-epochs"),
    Case("stage1-size-0", "augment stage1 {data} --sr {w}/garbage.pth --out {out} --size 0", 2, "--size"),
    Case("stage1-tile-negative", "augment stage1 {data} --sr {w}/garbage.pth --out {out} --tile -1", 2, "--tile"),
    Case("stage2-steps-0", "augment stage2 {data} --diffusion {run} --out {out} --steps 0", 2, "--steps"),
    Case("stage2-per-image-0", "augment stage2 {data} --diffusion {run} --out {out} --per-image 0", 2,
         "--per-image"),
    Case("stage2-strength-0", "augment stage2 {data} --diffusion {run} --out {out} --strength 0", 2, "--strength"),
    Case("merge-alpha-2", "augment merge --stage1 {w}/s1 --stage2 {w}/s2 --out {out} --alpha 2", 2, "--alpha"),
    Case("merge-band-150", "augment merge --stage1 {w}/s1 --stage2 {w}/s2 --out {out} --band 50 150", 2, "--band"),
    Case("export-samples-0", "export classifier {run} --out {out} --samples 0", 2, "--samples"),
    Case("export-num-classes-0", "export classifier resnet18 --out {out} --num-classes 0", 2, "--num-classes"),
    Case("classify-top-0", "classify {bundle} {data}/star/star_00000.png --top 0", 2, "--top"),
    Case("triage-batch-0", "triage {data} --model {bundle} --out {out}/t.csv --batch 0", 2, "--batch"),
    Case("triage-threshold-1.5", "triage {data} --model {bundle} --out {out}/t.csv --threshold 1.5", 2,
         "--threshold"),
    Case("triage-max-pixels-0", "triage {data} --model {bundle} --out {out}/t.csv --max-pixels 0", 2,
         "--max-pixels"),
    Case("triage-workers-0", "triage {data} --model {bundle} --out {out}/t.csv --workers 0", 2, "--workers"),
    Case("triage-unknown-format", "triage {data} --model {bundle} --out {out}/t.json", 2, "unknown results format"),
    Case("triage-engine-nonsense", "triage {data} --model {bundle} --out {out}/t.csv --engine spark", 2, "--engine"),
    Case("triage-gpus-per-worker-negative",
         "triage {data} --model {bundle} --out {out}/t.csv --engine ray --gpus-per-worker -1", 2, "--gpus-per-worker"),
    Case("triage-ray-option-locally", "triage {data} --model {bundle} --out {out}/t.csv --cpus-per-worker 2", 2,
         "--cpus-per-worker"),
    Case("report-thumbnails-0", "report {w}/afile --out {out}/r.html --thumbnails 0", 2, "--thumbnails"),
    Case("report-not-results", "report {w}/afile --out {out}/r.html", 1, "afile"),
    Case("experiment-epochs-0", "experiment {w}/sky --out {out} --epochs 0", 2, "--epochs"),
    Case("experiment-size-0", "experiment {w}/sky --out {out} --size 0", 2, "--size"),
    Case("demo-epochs-0", "demo --out {out} --epochs 0", 2, "--epochs"),
    Case("demo-per-class-1", "demo --out {out} --per-class 1", 2, "--per-class"),
    Case("device-nonsense", "train {data} --model resnet18 --out {out} --device nonsense", 2, "--device"),
    Case("stage1-device-nonsense", "augment stage1 {data} --sr {w}/garbage.pth --out {out} --device gpu", 2,
         "--device"),
    Case("experiment-device-nonsense", "experiment {w}/sky --out {out} --device tpu", 2, "--device"),
    # --- paths: OS problems are one line naming the path, exit 1, before any work ---------
    Case("split-out-is-folder", "data split {data} --out {w}/foreign", 1, "foreign"),
    Case("triage-out-under-a-file", "triage {data} --model {bundle} --out {w}/afile/t.csv", 1, "afile"),
    Case("synth-out-under-a-file", "data synth --out {w}/afile/sky", 1, "afile"),
    Case("synth-out-name-too-long", "data synth --out {out}/" + "n" * 300, 1, "longer than"),
    Case("train-out-read-only", "train {data} --model resnet18 --out {w}/readonly/run", 1, "readonly",
         skip="root may write anywhere" if ROOT else ""),
    Case("train-data-missing", "train {w}/nope --model resnet18 --out {out}", 1, "DATA"),
    Case("train-data-is-a-file", "train {w}/afile --model resnet18 --out {out}", 1, "afile"),
    Case("train-split-missing", "train {data} --model resnet18 --out {out} --split {w}/nope.csv", 1, "--split"),
    Case("train-weights-missing", "train {data} --model resnet18 --out {out} --weights {w}/nope.pth", 1, "--weights"),
    Case("train-out-foreign-folder", "train {data} --model resnet18 --out {w}/foreign", 1, "foreign"),
    Case("export-out-is-a-file", "export classifier {run} --out {w}/afile", 1, "afile"),
    Case("export-out-foreign-folder", "export classifier {run} --out {w}/foreign", 1, "foreign"),
    Case("export-calib-missing", "export classifier {run} --out {out} --calib {w}/nope", 1, "--calib"),
    Case("demo-out-is-a-file", "demo --out {w}/afile", 1, "afile"),
    Case("demo-out-foreign-folder", "demo --out {w}/foreign", 1, "foreign"),
    Case("info-missing-bundle", "info {w}/nope", 1, "BUNDLE"),
    Case("classify-bundle-is-a-file", "classify {w}/afile {data}/star/star_00000.png", 1, "afile"),
    Case("triage-dir-missing", "triage {w}/nope --model {bundle} --out {out}/t.csv", 1, "DIR"),
    Case("triage-foreign-csv", "triage {data} --model {bundle} --out {w}/notes.csv", 1, "notes.csv", alone=False),
    Case("train-sr-data-is-a-file", "train-sr {w}/afile --out {out}", 1, "afile"),
    Case("stage1-sr-missing", "augment stage1 {data} --sr {w}/nope.pth --out {out}", 1, "--sr"),
    Case("stage2-hub-id", "augment stage2 {data} --diffusion runwayml/stable-diffusion-v1-5 --out {out}", 1,
         "--diffusion"),
    Case("split-overwrites-a-foreign-file", "data split {data} --out {w}/notes.csv", 1, "notes.csv"),
    # --- an output that is, contains or lies inside an input: usage error, nothing written -
    Case("merge-into-stage1", "augment merge --stage1 {w}/s1 --stage2 {w}/s2 --out {w}/s1", 2, "--stage1"),
    Case("merge-inside-stage2", "augment merge --stage1 {w}/s1 --stage2 {w}/s2 --out {w}/s2/merged", 2, "--stage2"),
    Case("stage1-inside-data", "augment stage1 {data} --sr {w}/garbage.pth --out {data}/stage1", 2, "DATA"),
    Case("train-out-is-data", "train {data} --model resnet18 --out {data}", 2, "DATA"),
    Case("train-out-contains-split", "train {data} --model resnet18 --out {w} --split {w}/split.csv", 2, "--split"),
    Case("export-into-its-run", "export classifier {run} --out {run}", 2, "RUN"),
    Case("experiment-inside-data", "experiment {w}/sky --out {w}/sky/exp", 2, "DATA"),
    Case("stage2-into-data", "augment stage2 {data} --diffusion {run} --out {data}/gen", 2, "DATA"),
    # --- damaged or foreign artefacts: one line naming the file ----------------------------
    Case("resume-truncated-state", "train {data} --model resnet18 --out {w}/truncated_run --resume", 1,
         "train_state.pt", alone=False),
    Case("resume-run-json-wrong-shape", "train {data} --model resnet18 --out {w}/wrong_shape_run --resume", 1,
         "run.json"),
    Case("export-garbage-weights", "export classifier {w}/garbage_weights_run --out {out}", 1, "best.safetensors",
         alone=False),
    Case("stage1-sr-random-bytes", "augment stage1 {data} --sr {w}/garbage.pth --out {out}", 1, "garbage.pth",
         alone=False),
    Case("classify-edited-manifest", "classify {w}/edited_bundle {data}/star/star_00000.png", 1, "manifest.json"),
    Case("info-edited-manifest", "info {w}/edited_bundle", 1, "manifest.json"),
    Case("export-not-a-run", "export classifier {w}/foreign --out {out}", 2, "foreign"),
    Case("export-bad-model-name", "export classifier no_such_net --out {out}", 2, "no_such_net"),
    Case("export-sr-of-a-classifier-run", "export sr {run} --out {out}", 2, "flare export classifier"),
    Case("export-diffusion-of-a-classifier-run", "export diffusion {run} --out {out}", 2, "flare export classifier"),
    Case("export-classifier-of-a-bundle", "export classifier {bundle} --out {out}", 2, "already a bundle"),
    # --- data that cannot give a meaningful result -----------------------------------------
    Case("train-one-class", "train {w}/one_class --model resnet18 --out {out}", 1, "one_class"),
    Case("split-two-per-class", "data split {w}/two_per_class --out {out}/s.csv", 1, "two_per_class"),
    Case("train-two-per-class", "train {w}/two_per_class --model resnet18 --out {out}", 1, "two_per_class"),
    # --- resume with other settings, or without a run --------------------------------------
    Case("resume-other-lr", "train {data} --model resnet18 --out {w}/resumable_run --resume --lr 0.5", 2, "--lr"),
    Case("resume-other-flips", "train {data} --model resnet18 --out {w}/resumable_run --resume --balance", 2,
         "--balance"),
    Case("resume-other-model", "train {data} --model vgg11 --out {w}/resumable_run --resume", 2, "--model"),
    Case("train-over-a-run", "train {data} --model resnet18 --out {w}/resumable_run", 2, "--resume"),
    Case("resume-nothing", "train {data} --model resnet18 --out {out} --resume", 2, "--resume"),
    Case("export-run-with-num-classes", "export classifier {run} --out {out} --num-classes 3", 2, "--num-classes"),
]


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except those under ``skip``."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents:
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def world(sky_data: Path, trained_run: Path, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs for every case, copied so damaging them harms no other test."""
    from flare.runtime.core.runs import ClassifierRun
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1

    w = tmp_path_factory.mktemp("world")
    shutil.copytree(sky_data, w / "sky")
    shutil.copytree(trained_run, w / "run")
    shutil.copytree(bundle, w / "bundle")
    (w / "afile").write_text("not a folder\n")
    (w / "foreign").mkdir()
    (w / "foreign" / "notes.txt").write_text("my notes\n")
    (w / "notes.csv").write_text("my,own,table\n1,2,3\n")
    (w / "split.csv").write_text((trained_run / "split.csv").read_text())
    (w / "readonly").mkdir(mode=0o555)
    (w / "garbage.pth").write_bytes(os.urandom(4096))
    images = sorted((sky_data / "hr" / "star").glob("*.png"))
    (w / "one_class" / "star").mkdir(parents=True)
    for img in images:
        shutil.copy(img, w / "one_class" / "star" / img.name)
    for cls in ("star", "galaxy", "comet"):
        (w / "two_per_class" / cls).mkdir(parents=True)
        for img in sorted((sky_data / "hr" / cls).glob("*.png"))[:2]:
            shutil.copy(img, w / "two_per_class" / cls / img.name)
    run_stage1(sky_data / "hr", None, w / "s1", Stage1Config(size=32))
    (w / "s2").mkdir()

    for name in ("truncated_run", "wrong_shape_run", "garbage_weights_run", "resumable_run"):
        shutil.copytree(trained_run, w / name)
    for run in (w / "run", w / "truncated_run", w / "resumable_run", w / "garbage_weights_run"):
        config = ClassifierRun.load(run)  # the copies train on the world's data
        config.train.data = str(w / "sky" / "hr")
        config.save(run)
    state = w / "truncated_run" / "train_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    (w / "wrong_shape_run" / "run.json").write_text("[1, 2, 3]\n")
    (w / "garbage_weights_run" / "best.safetensors").write_bytes(os.urandom(2048))
    shutil.copytree(bundle, w / "edited_bundle")
    manifest = json.loads((w / "edited_bundle" / "manifest.json").read_text())
    manifest["inputs"][0]["shape"][2:] = [17, 17]
    write_manifest(w / "edited_bundle", manifest, indent=2)
    (w / "out").mkdir()
    return w


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_mistake_is_one_line_and_harms_nothing(case: Case, world: Path) -> None:
    if case.skip:
        pytest.skip(case.skip)
    if case.id.startswith(("device", "train-one", "train-two")):
        pytest.importorskip("torch")
    out = world / "out" / case.id
    paths = {"data": world / "sky" / "hr", "lr": world / "sky" / "lr", "run": world / "run",
             "bundle": world / "bundle", "out": out, "w": world}
    args = [part.format(**paths) for part in case.args.split()]
    before = _snapshot(world, world / "out")

    result = CliRunner().invoke(cli, args)

    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.code, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert case.names in errors[0], errors[0]
    if case.alone:
        assert len(lines) == 1, result.stderr
    assert _snapshot(world, world / "out") == before, "an input file changed"


def test_the_table_is_as_wide_as_the_issue_asks() -> None:
    """At least 60 cases, every command of the CLI among them, no two with one id."""
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    first_words = {c.args.split()[0] for c in CASES}
    assert first_words >= {"data", "train", "train-sr", "train-diffusion", "augment", "experiment", "export", "info",
                           "classify", "triage", "demo"}
