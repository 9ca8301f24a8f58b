"""FLARE stage 1: SR metrics, SR training, the five augmentations, ``augment stage1``."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from flare.cli import cli  # noqa: E402
from flare.training.data.folders import scan_image_folder  # noqa: E402
from flare.training.data.splits import split_groups  # noqa: E402
from flare.training.pipeline.augment import AUGMENTATIONS, _pipelines, augment_image  # noqa: E402
from flare.training.sr.metrics import luminance, psnr, ssim  # noqa: E402


@pytest.fixture(scope="module")
def sr_run(sky_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flare.runtime.core.runs import SRTraining
    from flare.training.sr.train import train_sr

    run = tmp_path_factory.mktemp("sr") / "run"
    train_sr(SRTraining(data=str(sky_data / "hr"), epochs=1, steps_per_epoch=3, batch=2, patch=32), run)
    return run


def test_sr_metrics_match_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-25, 25, a.shape), 0, 255).astype(np.uint8)
    ya, yb = luminance(a), luminance(b)
    ref_ssim = metrics.structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=255)
    assert ssim(a, b) == pytest.approx(ref_ssim, abs=1e-6)
    assert psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(ya, yb, data_range=255), abs=1e-9)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)


def test_augmentations_have_the_methods_parameters() -> None:
    pipes = _pipelines(512)
    assert tuple(pipes) == AUGMENTATIONS
    jitter = pipes["jitter"].transforms[0]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == ((0.4, 1.6), (0.6, 1.4), (0.7, 1.3), (-0.2, 0.2))
    flip, jitter2 = pipes["hflip_jitter"].transforms[:2]
    assert flip.p == 1.0
    assert (jitter2.brightness, jitter2.contrast, jitter2.saturation, jitter2.hue) == ((0.8, 1.2), (0.30000000000000004, 1.7), (0.5, 1.5), (-0.5, 0.5))
    crop = pipes["crop"].transforms[0]
    assert crop.size == (512, 512) and crop.scale == (0.75, 0.90)
    persp = pipes["perspective"].transforms[0]
    assert persp.distortion_scale == 0.2 and persp.p == 0.5


def test_augment_image_is_deterministic_per_image() -> None:
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    a, b, c = augment_image(img, 64, 0, "k1"), augment_image(img, 64, 0, "k1"), augment_image(img, 64, 0, "k2")
    assert list(a) == ["original", *AUGMENTATIONS]
    assert all(v.size == (64, 64) for v in a.values())
    assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)
    assert not np.array_equal(np.asarray(a["jitter"]), np.asarray(c["jitter"]))
    assert np.array_equal(np.asarray(a["hflip"]), np.asarray(a["original"])[:, ::-1])


def test_train_sr_run_and_resume(sr_run: Path, sky_data: Path) -> None:
    from flare.runtime.core.runs import SRTraining
    from flare.training.sr.train import load_sr, train_sr

    rows = [json.loads(line) for line in (sr_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "l1"} <= set(rows[0])
    model, config, weights = load_sr(sr_run)
    assert config.scale == 4 and weights.name == "best.safetensors"
    assert model(torch.zeros(1, 3, 9, 11)).shape == (1, 3, 36, 44)
    # resume extends the same run to a second epoch
    train_sr(SRTraining(data=str(sky_data / "hr"), epochs=2), sr_run, resume=True)
    rows = [json.loads(line) for line in (sr_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["l1"] != rows[0]["l1"]


def test_train_sr_mse_loss_is_used_recorded_and_checked(sr_run: Path, sky_data: Path, tmp_path: Path) -> None:
    from flare.runtime.core.runs import SRRun
    from flare.runtime.foundation.errors import ArtifactError

    run = tmp_path / "mse"
    args = ["train-sr", str(sky_data / "hr"), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "3",
            "--batch", "2", "--patch", "32", "--loss", "mse"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert SRRun.load(run).train.loss == "mse" and SRRun.load(sr_run).train.loss == "l1"
    mse = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    l1 = json.loads((sr_run / "metrics.jsonl").read_text().splitlines()[0])
    # same seed, data and first batches: squared errors of pixels in [0, 1] are below absolute ones
    assert "l1" not in mse and 0 < mse["mse"] < l1["l1"]
    # resuming under another loss is refused; an unknown loss is a usage error; a damaged run.json is named
    other = CliRunner().invoke(cli, [*args[:-1], "l1", "--resume"])
    assert other.exit_code == 2 and "--loss" in other.output
    assert CliRunner().invoke(cli, [*args[:-1], "huber"]).exit_code == 2
    meta = json.loads((run / SRRun.FILE).read_text())
    meta["train"]["loss"] = "huber"
    (run / SRRun.FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="huber"):
        SRRun.load(run)


def test_untrained_bicubic_residual_model_is_bicubic_upscaling() -> None:
    """Training starts from bicubic quality, whatever the head (the mean SwinIR adds back included)."""
    from flare.training.sr.swinir import CONFIGS, SwinIRConfig
    from flare.training.sr.train import build_sr

    x = torch.rand(2, 3, 12, 20)
    classical = SwinIRConfig(scale=2, upsampler="pixelshuffle", embed_dim=12, depths=(1,), num_heads=(2,), num_feat=8)
    for cfg in (CONFIGS["tiny_x4"], classical):
        with torch.no_grad():
            out = build_sr(cfg, bicubic_residual=True).eval()(x)
        bicubic = torch.nn.functional.interpolate(x, scale_factor=cfg.scale, mode="bicubic", align_corners=False)
        assert out.shape == bicubic.shape
        assert torch.allclose(out, bicubic, atol=1e-6)


def test_sr_training_draws_fresh_aligned_degradations_in_every_orientation() -> None:
    from flare.training.sr.train import random_patches

    # one 64 px HR image with no symmetry of its own: a bright bar along the top, left of centre
    hr = np.full((64, 64, 3), 10, np.uint8)
    hr[4:16, 4:40] = 240
    lr, hr_batch = random_patches([(None, hr)], batch=64, patch=64, scale=4, rng=np.random.default_rng(0))
    assert lr.shape == (64, 3, 16, 16) and hr_batch.shape == (64, 3, 64, 64)
    # every LR crop is the degraded twin of its HR crop, in the same orientation
    down = torch.nn.functional.avg_pool2d(hr_batch, 4)
    assert min(float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) for a, b in zip(lr, down)) > 0.9
    # all eight flips and quarter turns occur
    orientations = {h.numpy().tobytes() for h in hr_batch}
    assert len(orientations) == 8
    # and the same view of the image gets a new degradation at every draw (noise, blur, JPEG)
    same = [i for i in range(1, 64) if torch.equal(hr_batch[i], hr_batch[0])]
    assert same and all(not torch.equal(lr[i], lr[0]) for i in same)


def test_stage1_outputs_manifest_resume_and_split(sr_run: Path, sky_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s1"
    args = ["augment", "stage1", str(sky_data / "hr"), "--sr", str(sr_run), "--out", str(out), "--size", "48",
            "--tile", "16", "--overlap", "4"]  # 32 px sources: 3 x 3 tiles each
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    with open(out / "stage1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 * 6
    by_source = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r)
        assert Image.open(out / r["output"]).size == (48, 48)
    assert all(sorted(x["kind"] for x in v) == sorted(["original", *AUGMENTATIONS]) for v in by_source.values())
    # the outputs form an ImageFolder whose grouped split keeps each source's six images together
    samples, classes = scan_image_folder(out)
    assert len(samples) == 48 * 6 and len(classes) == 8
    splits = defaultdict(set)
    for r in split_groups(samples, seed=0):
        splits[r["group"]].add(r["split"])
    assert len(splits) == 48 and all(len(s) == 1 for s in splits.values())
    # re-running does nothing; losing the journal's last source redoes just that one
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "0 images written" in again.output
    lines = (out / "stage1.csv").read_text().splitlines(keepends=True)
    (out / "stage1.csv").write_text("".join(lines[:-6]) + lines[-6][:10])  # six rows lost, one torn
    third = CliRunner().invoke(cli, args)
    assert third.exit_code == 0 and "6 images written for 1 sources" in third.output
    with open(out / "stage1.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 48 * 6


def test_stage1_accepts_an_official_checkpoint(sky_data: Path, tmp_path: Path) -> None:
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1
    from flare.training.sr.swinir import CONFIGS, SwinIR

    model = SwinIR.from_config(CONFIGS["tiny_x4"])
    pth = tmp_path / "swinir_tiny.pth"
    torch.save({"params_ema": model.state_dict()}, pth)
    one_class = tmp_path / "data" / "star"
    one_class.mkdir(parents=True)
    for p in sorted((sky_data / "lr" / "star").glob("*.png"))[:2]:
        (one_class / p.name).write_bytes(p.read_bytes())
    counts = run_stage1(tmp_path / "data", pth, tmp_path / "out", Stage1Config(size=32, tile=0))
    assert counts == {"sources": 2, "skipped": 0, "written": 12, "unreadable": 0}


def test_stage1_records_an_unreadable_image_and_goes_on(sky_data: Path, tmp_path: Path) -> None:
    import shutil

    from flare.training.pipeline.stage1 import ERROR_KIND, Stage1Config, run_stage1

    data = tmp_path / "data"
    shutil.copytree(sky_data / "hr" / "comet", data / "comet")
    (data / "comet" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    counts = run_stage1(data, None, tmp_path / "s1", Stage1Config(size=32))
    assert counts["unreadable"] == 1 and counts["written"] == 6 * 6
    with open(tmp_path / "s1" / "stage1.csv", newline="") as f:
        errors = [r for r in csv.DictReader(f) if r["kind"] == ERROR_KIND]
    assert [(r["source"], r["output"]) for r in errors] == [("comet/broken.png", "")]
    assert "broken.png" in errors[0]["error"]
    again = run_stage1(data, None, tmp_path / "s1", Stage1Config(size=32))
    assert again["skipped"] == 7 and again["written"] == 0  # recorded: not retried, not fatal


def test_stage1_resume_checks_its_outputs_and_settings(sky_data: Path, tmp_path: Path) -> None:
    from flare.runtime.foundation.errors import FlareError
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1

    out = tmp_path / "s1"
    run_stage1(sky_data / "hr", None, out, Stage1Config(size=32))
    gone = sorted(out.rglob("*.png"))[3]
    gone.unlink()
    with pytest.raises(FlareError, match="finished files that are missing"):
        run_stage1(sky_data / "hr", None, out, Stage1Config(size=32))
    gone.write_bytes(b"")  # (restored, as far as resume can tell)
    with pytest.raises(FlareError, match="--size 32 then, 48 now"):
        run_stage1(sky_data / "hr", None, out, Stage1Config(size=48))


def test_stage1_runs_an_sr_bundle_on_the_runtime_like_its_checkpoint(sky_data: Path, tmp_path: Path,
                                                                    swinir_checkpoint) -> None:
    pytest.importorskip("onnx")
    from flare.export.sr import export_sr
    from flare.training.pipeline.stage1 import Stage1Config, run_stage1
    from flare.training.sr.swinir import CONFIGS

    pth = swinir_checkpoint(CONFIGS["tiny_x4"], tmp_path / "tiny.pth")
    bundle = export_sr(pth, tmp_path / "bundle")[0]
    data = tmp_path / "data" / "star"
    data.mkdir(parents=True)
    for p in sorted((sky_data / "lr" / "star").glob("*.png"))[:2]:
        (data / p.name).write_bytes(p.read_bytes())
    config = Stage1Config(size=48, tile=24, overlap=8, augmentations=())
    by_torch = run_stage1(tmp_path / "data", pth, tmp_path / "torch", config)
    result = CliRunner().invoke(cli, ["augment", "stage1", str(tmp_path / "data"), "--sr", str(bundle), "--out",
                                      str(tmp_path / "runtime"), "--size", "48", "--tile", "24", "--overlap", "8"])
    assert result.exit_code == 0, result.output
    assert by_torch["written"] == 2
    with open(tmp_path / "runtime" / "stage1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["sr"] for r in rows} == {"bundle bundle (x4, onnxruntime:cpu)"}
    for p in sorted(data.glob("*.png")):
        a = np.asarray(Image.open(tmp_path / "torch" / "star" / p.name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "runtime" / "star" / p.name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, p.name
