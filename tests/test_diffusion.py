"""Tests for FLARE stage 2 (``flare.training.diffusion`` and ``flare.training.pipeline.stage2``):
model shapes, guidance dropout, seeded sampling, both samplers, training with exact resume,
the diffusers folder layout read by the same loader as a local pipeline, resumable generation
with provenance and hub-id refusal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from flare.cli import cli
from flare.runtime.core.runs import DiffusionRun, DiffusionTraining
from flare.runtime.core.taxonomy import FINE_CLASSES
from flare.runtime.foundation.errors import FlareError, UsageError
from flare.training.data.synth import SynthConfig, synthesize
from flare.training.diffusion.commands import train_diffusion
from flare.training.diffusion.model import (ClassPromptEmbedding, LatentDiffusion, PromptTable, build_model,
                                            condition_dropout, get_config, load_diffusion, sample, to_model_input,
                                            INITIAL_LOG_VARIANCE)
from flare.training.diffusion.train import train_diffusion as run_training
from flare.training.pipeline.commands import stage2
from flare.training.pipeline.stage2 import COLUMNS, MANIFEST, Stage2Config, augment_stage2, output_for

CLASSES = ["galaxy", "planet", "star"]


@pytest.fixture(scope="module")
def model() -> LatentDiffusion:
    torch.manual_seed(0)
    return build_model(get_config("tiny", image_size=32), CLASSES).eval()


def test_forward_shapes(model: LatentDiffusion) -> None:
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.encode(images)
        assert z.shape == (2, 4, 8, 8)
        assert model.decode(z).shape == (2, 3, 32, 32)
        context = model.cond(torch.tensor([0, model.cond.null_index]))
        assert context.shape == (2, 4, 64)
        cond = model.image_condition(z, torch.tensor([True, False]))
        assert cond.shape == z.shape and cond[1].abs().sum() == 0 and cond[0].abs().sum() > 0
        pred = model.predict(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), context, cond)
    assert pred.shape == (2, 4, 8, 8)
    assert model.unet.config.in_channels == 8  # noisy latent + source-image latent
    assert model.image_size == 32 and model.supports_image_variation


def test_a_new_vae_carries_the_image_in_every_latent_channel(model: LatentDiffusion) -> None:
    """Its posterior starts narrow: a channel drowned in sampling noise is learnt to be ignored."""
    with torch.no_grad():
        posterior = model.vae.encode(torch.rand(4, 3, 32, 32) * 2 - 1).latent_dist
    torch.testing.assert_close(posterior.std, torch.full_like(posterior.std, float(np.exp(INITIAL_LOG_VARIANCE / 2))))
    assert bool((posterior.mean.std(dim=(0, 2, 3)) > 1.5 * posterior.std.max()).all())


def test_paper_config_is_sd_sized() -> None:
    cfg = get_config("paper")
    assert cfg.image_size == 512 and cfg.image_size // cfg.vae_factor == 64 and cfg.latent_channels == 4
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    with torch.device("meta"):  # build without allocating: SD v1's UNet has ~860 M parameters
        paper = build_model(cfg, CLASSES)
    assert paper.latent_size == 64 and paper.image_size == 512
    assert 800e6 < sum(p.numel() for p in paper.unet.parameters()) < 900e6
    with pytest.raises(UsageError, match="multiple of"):
        get_config("tiny", image_size=40)
    with pytest.raises(UsageError, match="unknown diffusion config"):
        get_config("huge")


def test_condition_dropout_rates() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(20_000, dtype=torch.long)
    dropped, keep = condition_dropout(labels, 7, 0.1, 0.3, g)
    assert set(dropped.unique().tolist()) == {0, 7}
    assert abs(float((dropped == 7).float().mean()) - 0.1) < 0.01
    assert abs(float(keep.float().mean()) - 0.7) < 0.015
    none, all_kept = condition_dropout(labels[:50], 7, 0.0, 0.0, g)
    assert (none == 0).all() and all_kept.all()


def test_class_names_map_to_labels_and_null(model: LatentDiffusion) -> None:
    assert model.cond.labels_for(["planet", None]).tolist() == [1, 3]
    with pytest.raises(FlareError, match="cannot generate"):
        model.cond.labels_for(["quasar"])


def test_sampling_is_seeded_and_class_conditional(model: LatentDiffusion) -> None:
    kw = dict(steps=3, guidance=4.0, sampler="dpmpp")
    a = sample(model, ["galaxy", "planet"], 2, seed=5, **kw)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    b = sample(model, ["galaxy", "planet"], 2, seed=5, batch=1, **kw)
    assert np.abs(a.astype(int) - b).max() <= 1  # same images whatever the batch
    assert not np.array_equal(sample(model, ["galaxy"], 2, seed=6, **kw), a[:2])
    assert np.abs(sample(model, ["star"], 2, seed=5, **kw).astype(int) - a[:2]).mean() > 1
    # guidance 0 is the null-prompt prediction alone: the class must no longer matter
    u1 = sample(model, ["galaxy"], 1, seed=5, steps=3, guidance=0.0)
    u2 = sample(model, ["star"], 1, seed=5, steps=3, guidance=0.0)
    assert np.abs(u1.astype(int) - u2).max() <= 1


@pytest.mark.parametrize("sampler,order", [("dpmpp", 1), ("dpmpp", 3), ("ddim", 1)])
def test_samplers_run_and_image_variation(model: LatentDiffusion, sampler: str, order: int) -> None:
    src = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    out = sample(model, ["star"], 1, steps=4, guidance=2.0, sampler=sampler, seed=1, order=order)
    var = sample(model, ["star"], 1, steps=4, guidance=2.0, sampler=sampler, seed=1, order=order,
                 source_images=[src])
    assert out.shape == var.shape == (1, 32, 32, 3)
    assert not np.array_equal(out, var)
    with pytest.raises(UsageError, match="sampler"):
        sample(model, ["star"], 1, steps=2, sampler="euler")


# ---------------------------------------------------------------------------- training


def _train_cfg(data: Path, epochs: int) -> DiffusionTraining:
    return DiffusionTraining(data=str(data), resolution=32, epochs=epochs, vae_epochs=1, vae_colour_warmup=2, batch=8,
                             vae_batch=8, sample_per_class=1, sample_steps=2, warmup_steps=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("diffusion")
    synthesize(tmp / "synth", SynthConfig(per_class=2, size=32, seed=0))
    data = tmp / "synth" / "hr"
    full, split = tmp / "full", tmp / "split"
    run_training(_train_cfg(data, 2), full)
    run_training(_train_cfg(data, 1), split)
    return {"data": data, "full": full, "split": split, "tmp": tmp}


def test_train_writes_run_and_resume_matches_uninterrupted(trained: dict[str, Path]) -> None:
    full, split = trained["full"], trained["split"]
    run = DiffusionRun.load(full)
    assert run.conditioner.classes == list(FINE_CLASSES) and run.train.resolution == 32
    assert run.conditioner.prompts[1] == "An image of black hole in space"
    vae = json.loads((full / "vae" / "config.json").read_text())
    assert vae["_class_name"] == "AutoencoderKL" and vae["scaling_factor"] != 0.18215  # measured on the data
    images = torch.stack([to_model_input(np.asarray(Image.open(f).convert("RGB")), 32)
                          for f in sorted(trained["data"].rglob("*.png"))[:8]])
    with torch.no_grad():
        posterior = load_diffusion(full).vae.encode(images).latent_dist
    assert bool((posterior.std.transpose(0, 1).flatten(1).median(1).values < 0.5).all())  # no channel is noise
    for name in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "conditioner/conditioner.safetensors",
                 "training/last.safetensors", "training/train_state.pt", "latents.safetensors",
                 "samples/vae_epoch_0001.png", "samples/epoch_0002.png", "samples/epoch_0003.png",
                 "samples/epoch_0003_variations.png"):
        assert (full / name).is_file(), name
    assert not list(full.glob("*.partial"))
    assert not (split / "samples" / "epoch_0003.png").exists()
    result = CliRunner().invoke(train_diffusion, [str(trained["data"]), "--out", str(split), "--epochs", "2",
                                                  "--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    epochs = [json.loads(line)["epoch"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    for weights in ("training/last.safetensors", "unet/diffusion_pytorch_model.safetensors",
                    "conditioner/conditioner.safetensors"):
        a, b = load_file(str(full / weights)), load_file(str(split / weights))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), weights
    again = CliRunner().invoke(train_diffusion, [str(trained["data"]), "--out", str(split)])
    assert again.exit_code != 0 and isinstance(again.exception, UsageError)


def test_stage2_generates_k_per_source_and_resumes(trained: dict[str, Path]) -> None:
    data, out = trained["data"], trained["tmp"] / "stage2"
    args = [str(data), "--diffusion", str(trained["full"]), "--out", str(out), "--per-image", "2",
            "--steps", "2", "--guidance", "3", "--seed", "7"]
    result = CliRunner().invoke(stage2, args)
    assert result.exit_code == 0, result.output
    sources = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    expected = sorted(output_for(s, k) for s in sources for k in range(2))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == expected
    assert expected[0].endswith("__gen0.png") and expected[0].split("/")[0] in FINE_CLASSES
    with open(out / MANIFEST, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == COLUMNS
    assert sorted(r["output"] for r in rows) == expected
    assert all(r["class"] == r["source"].split("/")[0] and r["image_variation"] == "1" for r in rows)
    assert len({r["seed"] for r in rows}) == len(rows)

    # resume: nothing new, no duplicate rows; a torn last line is repaired and its image redone
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert CliRunner().invoke(stage2, args).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    text = (out / MANIFEST).read_text()
    (out / MANIFEST).write_text(text[:-15])
    summary = augment_stage2(data, trained["full"], out, Stage2Config(per_image=2, steps=2, guidance=3, seed=7))
    assert summary["written"] == 1 and summary["skipped"] == len(expected) - 1
    assert (out / MANIFEST).read_text() == text  # same seed => the same row back


def test_stage2_refuses_bad_requests(trained: dict[str, Path], tmp_path: Path) -> None:
    data = trained["data"]
    with pytest.raises(UsageError, match="inside the data folder"):
        augment_stage2(data, trained["full"], data / "gen", Stage2Config(steps=1))
    other = tmp_path / "other" / "quasar"
    other.mkdir(parents=True)
    (other / "x.png").write_bytes((data / "star" / "star_00000.png").read_bytes())
    with pytest.raises(FlareError, match="trained on classes"):
        augment_stage2(tmp_path / "other", trained["full"], tmp_path / "o", Stage2Config(steps=1))


def test_hub_id_is_refused_without_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import diffusers

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to load from the hub")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", no_download)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="never downloads"):
        load_diffusion("runwayml/stable-diffusion-v1-5")
    (tmp_path / "data" / "star").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["augment", "stage2", str(tmp_path / "data"),
                                      "--diffusion", "runwayml/stable-diffusion-v1-5", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "--diffusion runwayml/stable-diffusion-v1-5 does not exist" in result.stderr
    with pytest.raises(UsageError, match="neither a diffusion RUN"):
        load_diffusion(tmp_path)


# ---------------------------------------------------------------------------- pretrained pipelines


def test_local_stable_diffusion_pipeline(tmp_path: Path, tiny_sd_pipeline) -> None:
    tiny_sd_pipeline(tmp_path)
    model = load_diffusion(tmp_path / "pipe")
    assert isinstance(model, LatentDiffusion) and model.info.kind == "pipeline" and model.info.classes is None
    assert model.image_size == 16
    a = sample(model, ["black hole", "comet"], 1, steps=3, guidance=5.0, seed=3)
    b = sample(model, ["black hole", "comet"], 1, steps=3, guidance=5.0, seed=3, batch=1)
    assert a.shape == (2, 16, 16, 3) and np.abs(a.astype(int) - b).max() <= 1
    src = np.full((20, 20, 3), 200, np.uint8)
    var = sample(model, ["comet"], 1, steps=4, guidance=5.0, seed=3, source_images=[src], strength=0.5)
    assert var.shape == (1, 16, 16, 3) and not np.array_equal(var[0], a[1])
    # a pipeline that is not Stable-Diffusion-shaped is refused, naming what it lacks
    import shutil

    shutil.rmtree(tmp_path / "pipe" / "text_encoder")
    with pytest.raises(FlareError, match="lacks text_encoder"):
        load_diffusion(tmp_path / "pipe")


def test_one_loader_reads_a_run_and_a_pipeline_alike(trained: dict[str, Path]) -> None:
    """A RUN is a diffusers folder: diffusers' own loaders read its parts, as they read a pipeline's."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    run = trained["full"]
    model = load_diffusion(run)
    assert model.info.kind == "run" and model.info.classes == list(FINE_CLASSES)
    unet = UNet2DConditionModel.from_pretrained(str(run / "unet"), local_files_only=True)
    vae = AutoencoderKL.from_pretrained(str(run / "vae"), local_files_only=True)
    for mine, theirs in ((model.unet, unet), (model.vae, vae)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_text_encoder_prompts_are_tabled(tmp_path: Path, tiny_clip) -> None:
    tiny_clip(tmp_path / "clip")
    model = build_model(get_config("tiny", image_size=32), CLASSES, text_encoder=tmp_path / "clip")
    assert isinstance(model.cond, PromptTable) and model.cond.table.shape == (4, 16, 32)
    assert not torch.equal(model.cond.table[0], model.cond.table[1])
    assert model.unet.config.cross_attention_dim == 32
    with torch.no_grad():
        assert model.cond.encode(["star", None]).shape == (2, 16, 32)


def test_learned_prompts_without_text_encoder(model: LatentDiffusion) -> None:
    assert isinstance(model.cond, ClassPromptEmbedding) and model.cond.null_index == len(CLASSES)


def test_train_with_a_local_vae_skips_the_vae_phase(trained: dict[str, Path], tmp_path: Path, tiny_sd_pipeline) -> None:
    tiny_sd_pipeline(tmp_path)  # its vae/ subfolder is reused
    cfg = _train_cfg(trained["data"], 1)
    cfg.vae = str(tmp_path / "pipe")
    run_training(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["unet"]
    assert cfg.vae_colour_warmup == 2 and DiffusionRun.load(tmp_path / "run").train.vae_colour_warmup == 0  # none ran
    model = load_diffusion(tmp_path / "run")
    assert model.latent_size == 16 and model.vae.config.block_out_channels == [16, 16]
    assert sample(model, ["comet"], 1, steps=2, seed=0).shape == (1, 32, 32, 3)


def test_text_encoder_without_transformers_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(FlareError, match=r"pip install .flare-edge\[train\]."):
        build_model(get_config("tiny", image_size=32), CLASSES, text_encoder=tmp_path)


def test_vae_colour_warmup_trains_on_the_most_colourful_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up's batches come from the most colourful eighth only; then every image is trained on."""
    from flare.training.diffusion import train as diffusion_train

    rng = np.random.default_rng(0)
    for i in range(16):  # 14 grey images, a faintly and a strongly coloured one, in two classes
        grey = rng.integers(0, 200, (32, 32, 1))
        tint = {3: (0, 20, 40), 11: (90, 0, 0)}.get(i, (0, 0, 0))
        img = np.clip(np.repeat(grey, 3, axis=2) + np.array(tint), 0, 255).astype(np.uint8)
        (tmp_path / "data" / ("galaxy" if i % 2 else "star")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "data" / ("galaxy" if i % 2 else "star") / f"{i:02d}.png")
    batches: list[list[int]] = []
    step = diffusion_train._Trainer.vae_step
    monkeypatch.setattr(diffusion_train._Trainer, "vae_step",
                        lambda self, idx, g: batches.append(list(idx)) or step(self, idx, g))
    cfg = DiffusionTraining(data=str(tmp_path / "data"), resolution=32, epochs=0, vae_epochs=2, vae_batch=1,
                            vae_colour_warmup=4, sample_per_class=1, sample_steps=2)
    run_training(cfg, tmp_path / "run")
    paths = diffusion_train.ImageSet(tmp_path / "data", 32).paths
    drawn = [Path(paths[i]).name for batch in batches for i in batch]
    assert set(drawn[:4]) <= {"11.png", "03.png"}  # the most colourful eighth: 2 of 16
    order = diffusion_train.ImageSet(tmp_path / "data", 32).colourfulness().argsort(descending=True).tolist()
    assert [Path(paths[i]).name for i in order[:2]] == ["11.png", "03.png"]
    assert sorted(drawn[4:]) == sorted([Path(p).name for p in paths] * 2)  # then two epochs over all 16, no other warm-up
    assert DiffusionRun.load(tmp_path / "run").train.vae_colour_warmup == 4
    # a run saved before the warm-up existed had none
    meta = json.loads((tmp_path / "run" / DiffusionRun.FILE).read_text())
    del meta["train"]["vae_colour_warmup"]
    (tmp_path / "run" / DiffusionRun.FILE).write_text(json.dumps(meta))
    assert DiffusionRun.load(tmp_path / "run").train.vae_colour_warmup == 0
    result = CliRunner().invoke(train_diffusion, [str(tmp_path / "data"), "--out", str(tmp_path / "r2"),
                                                  "--vae-colour-warmup", "-1"])
    assert result.exit_code == 2 and "--vae-colour-warmup" in result.output
