"""``flare export diffusion`` and ``flare generate``: the bundle's parts and their gates, the
runtime's images against the PyTorch pipeline (our RUN) and diffusers' own
StableDiffusionPipeline (a random SD-shaped pipeline) for the same weights and noise, fp16,
the tokenizer, seeds and provenance, resume, stage 2 on a bundle, and the one-line mistakes.

Tolerance: the runtime's 8-bit images equal PyTorch's within one level (float rounding in a
different engine may flip a rounding at .5), and on average within 0.05 of a level.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("diffusers")

from bundle_edits import write_manifest
from flare.cli import cli  # noqa: E402
from flare.runtime.apps.generate_files import read_provenance  # noqa: E402
from flare.runtime.core.backends.options import RunnerOptions
from flare.runtime.core.generation_spec import initial_noise, prompt_for  # noqa: E402
from flare.runtime.core.manifest import Manifest
from flare.runtime.core.runs import DiffusionTraining
from flare.runtime.core.tasks import GENERATE_MODELS
from flare.runtime.tasks.generate import Generator  # noqa: E402
from flare.training.data.synth import SynthConfig, synthesize  # noqa: E402
from flare.training.diffusion.model import load_diffusion, make_scheduler  # noqa: E402
from flare.training.diffusion.train import train_diffusion  # noqa: E402

LEVEL_MAX, LEVEL_MEAN = 1, 0.05


def _close(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(int) - b.astype(int))
    assert a.shape == b.shape and diff.max() <= LEVEL_MAX and diff.mean() <= LEVEL_MEAN, (diff.max(), diff.mean())


def _export(*args: str) -> None:
    result = CliRunner().invoke(cli, ["export", "diffusion", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A briefly trained image-variation RUN on synthetic sky, exported fp32 and fp16."""
    tmp = tmp_path_factory.mktemp("generate")
    synthesize(tmp / "synth", SynthConfig(per_class=2, size=32, seed=0))
    data = tmp / "synth" / "hr"
    cfg = DiffusionTraining(data=str(data), resolution=32, epochs=2, vae_epochs=1, batch=8, vae_batch=8,
                            sample_per_class=1, sample_steps=2, warmup_steps=2)
    train_diffusion(cfg, tmp / "run")
    _export(str(tmp / "run"), "--out", str(tmp / "b32"))
    _export(str(tmp / "run"), "--out", str(tmp / "b16"), "--precision", "fp16")
    return {"tmp": tmp, "data": data, "run": tmp / "run", "b32": tmp / "b32", "b16": tmp / "b16"}


def test_bundle_holds_every_part_with_dynamic_batch_and_passing_gates(made: dict[str, Path]) -> None:
    manifest = Manifest.load(made["b32"])
    assert manifest.task == "generate"
    assert set(manifest.files) == {"unet", "vae_decoder", "vae_encoder", "class_embeddings", "sampler_step"}
    assert [t.name for t in manifest.inputs] == ["sample", "timestep", "encoder_hidden_states", "source_latent"]
    for key, io in manifest.models.items():
        if key != "sampler_step":
            assert all(t.shape[0] == "batch" for t in io.inputs + io.outputs)
    assert Manifest.load(made["b16"]).precision_of("unet") == "fp16"
    assert Manifest.load(made["b16"]).precision_of("sampler_step") == "fp32"  # never run in half precision
    step = manifest.models["sampler_step"]
    assert [t.name for t in step.inputs] == ["sample", "noise_pred", "coefficients", "history1", "history2"]
    assert step.inputs[1].shape[0] == "unet_batch" and step.inputs[2].shape == [8]
    parity = manifest.parity
    assert parity["passed"] and set(parity["parts"]) == {"unet", "vae_decoder", "vae_encoder"}
    assert all("images from the run's data" in p["inputs"] for p in parity["parts"].values())
    assert parity["parts"]["vae_decoder"]["psnr_db"] >= 60
    spec = manifest.preprocessing
    table = np.load(made["b32"] / "class_embeddings.npy")
    assert table.shape[0] == len(spec["classes"]) + 1 and spec["image_mode"] == "channels"
    info = CliRunner().invoke(cli, ["info", str(made["b32"])])
    assert info.exit_code == 0 and "parity      unet PASS" in info.output and "source images: channels" in info.output


@pytest.mark.parametrize("sampler,order,guidance", [("dpmpp", 3, 4.0), ("dpmpp", 2, 1.0), ("ddim", 3, 6.0)])
def test_runtime_images_equal_the_torch_pipeline(made: dict[str, Path], sampler: str, order: int,
                                                 guidance: float) -> None:
    model = load_diffusion(made["run"])
    names, seeds = ["galaxy", "star", "comet"], [3, 4, 5]
    want = model.generate(names, seeds, steps=12, guidance=guidance, sampler=sampler, order=order)
    with Generator(made["b32"], RunnerOptions("cpu"), batch=2) as gen:
        got = gen.generate(names, seeds, steps=12, guidance=guidance, sampler=sampler, order=order)
    _close(got, want)
    assert got.std() > 5 and not np.array_equal(got[0], got[1])  # real, distinct images


def test_image_variation_equals_torch(made: dict[str, Path]) -> None:
    sources = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(made["data"].rglob("*.png"))[:2]]
    model = load_diffusion(made["run"])
    want = model.generate(["nebula", "planet"], [7, 8], steps=8, guidance=5.0, sources=sources)
    with Generator(made["b32"], RunnerOptions("cpu")) as gen:
        got = gen.generate(["nebula", "planet"], [7, 8], steps=8, guidance=5.0, sources=sources)
        plain = gen.generate(["nebula", "planet"], [7, 8], steps=8, guidance=5.0)
    _close(got, want)
    assert np.abs(got.astype(int) - plain).mean() > 1  # the source changes the image


def test_fp16_bundle_is_finite_and_close_to_fp32(made: dict[str, Path]) -> None:
    manifest = Manifest.load(made["b16"])
    notes = manifest.extra["export"]
    assert notes["unet"]["precision"].startswith("fp16") and notes["vae_encoder"]["precision"] == "fp32"
    assert notes["vae_decoder"]["precision"].startswith("fp16") or "fp32_reason" in notes["vae_decoder"]
    import onnx

    graph = onnx.load(str(made["b16"] / "unet.onnx")).graph
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert all(t.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for t in [*graph.input[:1], *graph.output])
    names, seeds = ["galaxy", "nebula", "star", "planet"], [1, 2, 3, 4]
    with Generator(made["b32"], RunnerOptions("cpu")) as g32, Generator(made["b16"], RunnerOptions("cpu")) as g16:
        x32 = g32.generate(names, seeds, steps=10, guidance=4.0)
        latents = g16.contexts(names=names)
        assert np.isfinite(latents).all()
        x16 = g16.generate(names, seeds, steps=10, guidance=4.0)
    diff = np.abs(x16.astype(int) - x32)
    assert diff.mean() < 3.0 and np.percentile(diff, 99) <= 16, (diff.mean(), np.percentile(diff, 99))


def test_cli_writes_seeded_pngs_with_provenance_and_resumes(made: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gen"
    args = ["generate", str(made["b32"]), "--class", "black hole", "--out", str(out), "--steps", "6",
            "--guidance", "3", "--sampler", "ddim"]
    first = CliRunner().invoke(cli, [*args, "-n", "3", "--seed", "10"])
    assert first.exit_code == 0, first.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["black_hole_seed10.png", "black_hole_seed11.png", "black_hole_seed12.png"]
    text = read_provenance(out / "black_hole_seed11.png")
    assert text["flare:class"] == "black hole" and text["flare:seed"] == "11" and text["flare:steps"] == "6"
    assert text["flare:sampler"] == "ddim" and text["flare:guidance"] == "3.0"
    assert text["flare:bundle_sha256"] == Generator(made["b32"]).fingerprint
    # one image made again alone from its seed is the same image
    alone = CliRunner().invoke(cli, [*args[:5], str(tmp_path / "alone"), *args[6:], "-n", "1", "--seed", "11"])
    assert alone.exit_code == 0, alone.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "alone" / "black_hole_seed11.png")),
                          np.asarray(Image.open(out / "black_hole_seed11.png")))
    # a re-run keeps finished files and makes only the new ones
    before = (out / "black_hole_seed10.png").stat().st_mtime_ns
    again = CliRunner().invoke(cli, [*args, "-n", "4", "--seed", "10"])
    assert again.exit_code == 0 and "1 images written, 3 already there" in again.output
    assert (out / "black_hole_seed10.png").stat().st_mtime_ns == before
    # other settings into the same folder are refused, naming what differs
    other = CliRunner().invoke(cli, [*args[:6], "--steps", "7", *args[8:], "-n", "1", "--seed", "10"])
    assert other.exit_code == 2 and "steps differ" in other.output


def test_generate_runs_with_torch_blocked(made: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "for m in ('torch', 'torchvision', 'timm', 'diffusers', 'flare.training', 'flare.export'): sys.modules[m] = None\n"
        "from flare.cli import cli\n"
        f"cli(['generate', {str(made['b32'])!r}, '--class', 'star', '--out', {str(tmp_path)!r}, '--steps', '3'], "
        "prog_name='flare')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path.anchor)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "star_seed0.png").is_file()


def test_mistakes_are_one_line(made: dict[str, Path], tmp_path: Path, bundle: Path) -> None:
    no_encoder = tmp_path / "no_encoder"
    shutil.copytree(made["b32"], no_encoder)
    m = json.loads((no_encoder / "manifest.json").read_text())
    del m["files"]["vae_encoder"], m["models"]["vae_encoder"]
    write_manifest(no_encoder, m)
    source = sorted(made["data"].rglob("*.png"))[0]
    cases = [
        (["--class", "unicorn"], 2, "cannot generate 'unicorn'"),
        (["--prompt", "a red galaxy"], 2, "no text encoder, so it cannot take --prompt"),
        (["--class", "star", "--steps", "0"], 2, "--steps"),
        ([], 2, "give either --class NAME or --prompt TEXT"),
    ]
    for extra, code, message in cases:
        result = CliRunner().invoke(cli, ["generate", str(made["b32"]), "--out", str(tmp_path / "o"), *extra])
        assert result.exit_code == code and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["generate", str(no_encoder), "--class", "star", "--source", str(source),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot take --source" in result.output
    result = CliRunner().invoke(cli, ["generate", str(bundle), "--class", "star", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not a generate bundle" in result.output


def test_export_refuses_a_failing_part(made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flare.export import parity

    monkeypatch.setitem(parity.IMAGE_TOLERANCES, "fp32", (500.0, 0.0))  # no decoder can pass this
    out = tmp_path / "refused"
    result = CliRunner().invoke(cli, ["export", "diffusion", str(made["run"]), "--out", str(out)])
    assert result.exit_code == 1 and "vae_decoder" in result.output and "parity" in result.output
    assert not out.exists() and not out.with_name("refused.partial").exists()
    forced = CliRunner().invoke(cli, ["export", "diffusion", str(made["run"]), "--out", str(out),
                                      "--allow-parity-failure"])
    assert forced.exit_code == 0
    gate = Manifest.load(out).parity
    assert not gate["passed"] and not gate["parts"]["vae_decoder"]["passed"] and gate["parts"]["unet"]["passed"]


def test_stage2_runs_on_a_bundle_like_on_torch(made: dict[str, Path], tmp_path: Path) -> None:
    rows = {}
    for kind in ("run", "b32"):
        out = tmp_path / kind
        result = CliRunner().invoke(cli, ["augment", "stage2", str(made["data"]), "--diffusion", str(made[kind]),
                                          "--out", str(out), "--per-image", "1", "--steps", "4"])
        assert result.exit_code == 0, result.output
        with open(out / "stage2.csv", newline="") as f:
            rows[kind] = list(csv.DictReader(f))
    assert len(rows["run"]) == len(rows["b32"]) == len(list(made["data"].rglob("*.png")))
    for a, b in zip(rows["run"], rows["b32"], strict=True):
        assert {k: v for k, v in a.items() if k != "model"} == {k: v for k, v in b.items() if k != "model"}
        _close(np.asarray(Image.open(tmp_path / "b32" / b["output"])),
               np.asarray(Image.open(tmp_path / "run" / a["output"])))


# ---------------------------------------------------------------------- a Stable-Diffusion pipeline


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory, tiny_sd_pipeline) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sd")
    tiny_sd_pipeline(tmp)
    synthesize(tmp / "synth", SynthConfig(per_class=1, size=32, seed=1))
    _export(str(tmp / "pipe"), "--out", str(tmp / "bundle"), "--classes", "galaxy,comet",
            "--calib", str(tmp / "synth" / "hr"))
    return {"pipe": tmp / "pipe", "bundle": tmp / "bundle", "clip": tmp / "clip", "data": tmp / "synth" / "hr"}


def test_pipeline_bundle_carries_text_encoder_and_tokenizer(sd: dict[str, Path]) -> None:
    from transformers import CLIPTokenizer

    manifest = Manifest.load(sd["bundle"])
    assert {"text_encoder", "tokenizer", "vae_encoder"} <= set(manifest.files)
    assert manifest.parity["parts"]["tokenizer"]["passed"] and manifest.parity["parts"]["text_encoder"]["passed"]
    assert manifest.preprocessing["classes"] == ["galaxy", "comet"] and manifest.preprocessing["image_mode"] == "img2img"
    from flare.runtime.core.generation_spec import TextSpec
    from flare.runtime.core.tokenizer import PromptTokenizer

    slow = CLIPTokenizer.from_pretrained(str(sd["pipe"] / "tokenizer"), local_files_only=True)
    prompts = [prompt_for("black hole"), "", "an image of space " * 10]  # the last is truncated
    want = slow(prompts, padding="max_length", max_length=slow.model_max_length, truncation=True,
                return_tensors="np").input_ids
    spec = TextSpec(**manifest.preprocessing["text"])
    assert np.array_equal(PromptTokenizer(sd["bundle"] / "tokenizer.json", spec).encode(prompts), want)


@pytest.mark.parametrize("request_kind", ["tabled class", "other class", "prompt"])
def test_runtime_equals_diffusers_stable_diffusion_pipeline(sd: dict[str, Path], request_kind: str) -> None:
    """The runtime against diffusers' own StableDiffusionPipeline, same weights, same noise."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(sd["pipe"]), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    model = load_diffusion(sd["pipe"])
    pipe.scheduler = make_scheduler("dpmpp", model.scheduler_config, 3)
    seeds, steps, guidance = [21, 22], 10, 5.0
    text = {"tabled class": prompt_for("galaxy"), "other class": prompt_for("black hole"),
            "prompt": "a faint red nebula"}[request_kind]
    noise = torch.from_numpy(np.stack([initial_noise(s, (4, 8, 8)) for s in seeds]))
    want = pipe([text] * 2, latents=noise, num_inference_steps=steps, guidance_scale=guidance, output_type="np").images
    want = np.round(want * 255).astype(np.uint8)
    with Generator(sd["bundle"], RunnerOptions("cpu")) as gen:
        if request_kind == "prompt":
            got = gen.generate([], seeds, steps=steps, guidance=guidance, prompts=[text] * 2)
        else:
            got = gen.generate([text.split(" of ")[1].removesuffix(" in space")] * 2, seeds, steps=steps,
                               guidance=guidance)
    _close(got, want)
    assert got.std() > 1


def test_pipeline_img2img_equals_torch(sd: dict[str, Path]) -> None:
    source = np.asarray(Image.open(sorted(sd["data"].rglob("*.png"))[0]).convert("RGB"))
    model = load_diffusion(sd["pipe"])
    want = model.generate(["comet"], [4], steps=10, guidance=4.0, sources=[source], strength=0.6)
    with Generator(sd["bundle"], RunnerOptions("cpu")) as gen:
        got = gen.generate(["comet"], [4], steps=10, guidance=4.0, sources=[source], strength=0.6)
    _close(got, want)


def test_bench_measures_generation_against_torch(made: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(made["run"]), "--out", str(out), "--steps", "3", "--batch", "2",
                                      "--iterations", "2", "--warmup", "1", "--backends", "torch,cpu",
                                      "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    assert bench["task"] == "generate" and bench["steps"] == 3
    rows = {r["backend"]: r for r in bench["rows"]}
    assert set(rows) == {"torch", "onnxruntime:cpu"}
    runtime = rows["onnxruntime:cpu"]
    assert runtime["max_levels_vs_torch"] <= LEVEL_MAX and runtime["seconds_per_image"] > 0
    assert runtime["speedup_vs_torch_fp32"] == pytest.approx(rows["torch"]["seconds_per_image"]
                                                             / runtime["seconds_per_image"])
    assert bench["headlines"][0]["target"] == 1.2 and "s/image" in (out / "bench.md").read_text()


@pytest.mark.parametrize("which", ["b32", "b16", "sd"])
def test_every_part_passes_the_static_tensorrt_op_check(made: dict[str, Path], sd: dict[str, Path], which: str) -> None:
    bundle = sd["bundle"] if which == "sd" else made[which]
    manifest = Manifest.load(bundle)
    ops = manifest.extra["tensorrt_ops"]
    models = {k for k in manifest.files if k in GENERATE_MODELS}
    assert ops["passed"] and set(ops["models"]) == models and "sampler_step" in models
    assert all(not m["unsupported"] for m in ops["models"].values())
    assert all("Conv" in ops["models"][k]["ops"] for k in ("unet", "vae_decoder"))


def test_triton_repository_generates_the_runtimes_images(made: dict[str, Path], sd: dict[str, Path],
                                                         tmp_path: Path) -> None:
    from triton_fakes import Server, check_onnx_model, parse

    from flare.export.triton import export_triton

    repo = export_triton([made["b32"], sd["bundle"]], tmp_path / "repo")
    ours, pipe = made["b32"].name, sd["bundle"].name
    for part in ("unet", "vae_decoder", "vae_encoder"):
        check_onnx_model(repo / f"{ours}_{part}")
    assert parse(repo / f"{ours}_unet" / "config.pbtxt").max_batch_size == 8  # guided: twice the 4 images
    assert parse(repo / f"{ours}_vae_decoder" / "config.pbtxt").max_batch_size == 4
    check_onnx_model(repo / f"{pipe}_text_encoder")
    server = Server(repo)
    try:
        got = server.infer(ours, {"CLASS": np.array(["comet"], dtype=object), "SEED": np.array([7]),
                                  "COUNT": np.array([2]), "STEPS": np.array([4])})["IMAGES"]
        prompt = server.infer(pipe, {"PROMPT": np.array(["a red nebula"], dtype=object), "SEED": np.array([3]),
                                     "STEPS": np.array([3]), "GUIDANCE": np.array([5.0], dtype=np.float32)})["IMAGES"]
        with pytest.raises(RuntimeError, match="send either CLASS or PROMPT"):
            server.infer(ours, {"SEED": np.array([1])})
    finally:
        server.close()
    with Generator(made["b32"], RunnerOptions("cpu")) as gen:
        want = gen.generate(["comet", "comet"], [7, 8], steps=4)
    with Generator(sd["bundle"], RunnerOptions("cpu")) as gen:
        want_prompt = gen.generate([], [3], prompts=["a red nebula"], steps=3, guidance=5.0)
    assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1
    assert np.abs(prompt.astype(int) - want_prompt).max() <= 1



@pytest.mark.parametrize("sampler,order,guidance,prediction", [
    ("dpmpp", 3, 6.0, "epsilon"), ("dpmpp", 2, 1.0, "v_prediction"), ("ddim", 1, 4.0, "epsilon"),
    ("ddim", 1, 3.0, "sample")])
def test_sampler_step_graph_equals_the_numpy_step(tmp_path: Path, sampler: str, order: int, guidance: float,
                                                  prediction: str) -> None:
    import onnxruntime

    from flare.export.diffusion import save_sampler_step
    from flare.runtime.core.generation_spec import step_coefficients
    from flare.runtime.core.schedulers import make_sampler

    save_sampler_step(tmp_path / "step.onnx", (4, 8, 8))
    session = onnxruntime.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
              "prediction_type": prediction}
    host, graph = make_sampler(sampler, config, 8, order), make_sampler(sampler, config, 8, order)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    y, history = x.copy(), [np.zeros_like(x)] * 2
    copies = 2 if guidance != 1.0 else 1
    for i in range(len(host.timesteps)):
        raw = rng.standard_normal((2 * copies, 4, 8, 8)).astype(np.float32)
        out = raw[2:] * np.float32(guidance) + raw[:2] * np.float32(1 - guidance) if copies == 2 else raw
        x = host.step(out, i, x)
        coefficients = step_coefficients(graph.linear_step(i), guidance)
        y, unet_y, x0 = session.run(None, {"sample": y, "noise_pred": raw, "coefficients": coefficients,
                                           "history1": history[0], "history2": history[1]})
        history = [x0, history[0]]
        assert unet_y.shape == (2 * copies, 4, 8, 8) and np.array_equal(unet_y[-2:], y)
        np.testing.assert_allclose(y, x, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(x).max())))


@pytest.mark.parametrize("sampler,order,guidance", [("dpmpp", 3, 5.0), ("ddim", 3, 1.0)])
def test_sampling_on_the_device_gives_the_host_loops_images(made: dict[str, Path], sampler: str, order: int,
                                                            guidance: float) -> None:
    names, seeds = ["galaxy", "star", "comet"], [3, 4, 5]
    kwargs = {"steps": 10, "guidance": guidance, "sampler": sampler, "order": order}
    with Generator(made["b32"], RunnerOptions("cpu"), batch=3, device_loop=False) as gen:
        want = gen.generate(names, seeds, **kwargs)
    with Generator(made["b32"], RunnerOptions("cpu"), batch=3, device_loop=True) as gen:
        got = gen.generate(names, seeds, **kwargs)
        assert "sampler_step" in gen._runners  # the device loop ran
    _close(got, want)


def test_img2img_on_the_device_gives_the_host_loops_images(sd: dict[str, Path]) -> None:
    source = np.asarray(Image.open(sorted(sd["data"].rglob("*.png"))[0]).convert("RGB"))
    kwargs = {"steps": 6, "guidance": 4.0, "sources": [source], "strength": 0.6}
    with Generator(sd["bundle"], RunnerOptions("cpu"), device_loop=False) as gen:
        want = gen.generate(["galaxy"], [2], **kwargs)
    with Generator(sd["bundle"], RunnerOptions("cpu"), device_loop=True) as gen:
        got = gen.generate(["galaxy"], [2], **kwargs)
    _close(got, want)


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["preprocessing"]["defaults"].update(steps=0), "default steps must be a whole number of at least 1"),
    (lambda m: m["preprocessing"]["defaults"].update(guidance=float("nan")), "default guidance must be a finite"),
    (lambda m: m["preprocessing"]["scheduler"].update(prediction_type="banana"), "prediction_type must be one of"),
    (lambda m: m["preprocessing"]["scheduler"].update(num_train_timesteps=-3), "num_train_timesteps must be at least"),
    (lambda m: m["preprocessing"].update(scheduler="damaged"), "preprocessing section of a generate"),
    (lambda m: m["preprocessing"].update(latent_size=m["preprocessing"]["latent_size"] * 2),
     "latents but the UNet input 'sample' is"),
], ids=["zero-steps", "nan-guidance", "prediction", "timesteps", "scheduler-block", "latent-size"])
def test_an_inconsistent_generate_manifest_is_one_line(made: dict[str, Path], tmp_path: Path, edit, says: str) -> None:
    from bundle_edits import edited_bundle

    edited = edited_bundle(made["b32"], tmp_path / "b", edit)
    for args in (["info", str(edited)], ["generate", str(edited), "--class", "star", "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and says in errors[0] and "manifest.json" in errors[0], result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, code, says", [
    (["-n", "5000000000"], 2, "runs past the largest seed"),
    (["-n", "10", "--seed", "4294967290"], 2, "runs past the largest seed"),
    (["-n", "4000000000"], 1, "GB free; ask for at most"),
    (["--batch", "100000000000"], 1, "of memory"),
], ids=["n-past-seeds", "seed-near-end", "n-past-disk", "batch-past-memory"])
def test_a_request_the_machine_cannot_finish_is_refused_before_any_work(made: dict[str, Path], tmp_path: Path,
                                                                        args: list[str], code: int, says: str) -> None:
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["generate", str(made["b32"]), "--class", "star", "--out", str(out), *args])
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    assert says in result.output and not list(out.glob("*.png"))
