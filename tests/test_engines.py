"""Engine profiles, keying and refusal (flare.runtime.core.engines), and the provider options
built from them: everything about TensorRT engines that needs no GPU."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flare.cli import cli
from flare.runtime.core.engines import (Platform, ProfileOptions, engine_file_name, engine_for, engine_profile,
                                   profile_shapes, profile_to_manifest)
from flare.runtime.core.manifest import BundleFile, EngineInfo, Manifest, TensorSpec
from flare.runtime.foundation.errors import BackendError, UsageError

H100_TRT10 = Platform(tensorrt="10.13.0", compute_capability="9.0", gpu="NVIDIA H100 80GB HBM3")
ORIN_TRT10 = Platform(tensorrt="10.3.0", compute_capability="8.7", gpu="Orin")


def manifest(task: str, inputs: dict[str, list], preprocessing: dict | None = None, models: dict | None = None) -> Manifest:
    from flare.runtime.core.manifest import ModelIO

    specs = [TensorSpec(name, shape) for name, shape in inputs.items()]
    return Manifest(task=task, files={"model": BundleFile("model.onnx", "0" * 64, 1)}, inputs=specs,
                    outputs=[TensorSpec("out", ["batch", 8])], preprocessing=preprocessing or {},
                    models={k: ModelIO([TensorSpec(n, s) for n, s in v.items()], [TensorSpec("o", ["batch"])])
                            for k, v in (models or {}).items()})


def test_classify_profile_covers_batches_up_to_the_maximum_tuned_at_it() -> None:
    m = manifest("classify", {"input": ["batch", 3, 224, 224]})
    assert engine_profile(m, "model") == {"input": ((1, 3, 224, 224), (32, 3, 224, 224), (32, 3, 224, 224))}
    assert engine_profile(m, "model", ProfileOptions(max_batch=8))["input"][2] == (8, 3, 224, 224)


def test_enhance_profile_spans_every_side_the_runtime_takes_up_to_max_tile() -> None:
    m = manifest("enhance", {"image": ["batch", 3, "height", "width"]},
                 {"scale": 4, "window": 8, "channels": 3, "tile": 64, "overlap": 8})
    lo, opt, hi = engine_profile(m, "model", ProfileOptions(max_batch=4, max_tile=256))["image"]
    # from the smallest side the runtime accepts (window // 2 + 1) to --max-tile, tuned at the tile
    assert (lo, opt, hi) == ((1, 3, 5, 5), (4, 3, 64, 64), (4, 3, 256, 256))
    # never below the bundle's own recommended tile
    assert engine_profile(m, "model", ProfileOptions(max_tile=32))["image"][2][2:] == (64, 64)
    with pytest.raises(UsageError, match="multiple of the model's window"):
        engine_profile(m, "model", ProfileOptions(max_tile=100))


def test_generate_profile_doubles_the_guided_parts() -> None:
    parts = {"unet": {"sample": ["batch", 4, 16, 16], "timestep": ["batch"],
                      "encoder_hidden_states": ["batch", 77, 32]},
             "vae_decoder": {"latent": ["batch", 4, 16, 16]}, "text_encoder": {"input_ids": ["batch", 77]}}
    m = manifest("generate", parts["unet"], models=parts)
    unet = engine_profile(m, "unet", ProfileOptions(max_batch=3))
    assert unet["sample"] == ((1, 4, 16, 16), (2, 4, 16, 16), (6, 4, 16, 16))
    assert unet["timestep"] == ((1,), (2,), (6,))
    assert engine_profile(m, "vae_decoder", ProfileOptions(max_batch=3))["latent"] == (
        (1, 4, 16, 16), (1, 4, 16, 16), (3, 4, 16, 16))
    assert engine_profile(m, "text_encoder")["input_ids"][2] == (8, 77)


def test_unknown_symbolic_axis_is_refused() -> None:
    m = manifest("classify", {"input": ["batch", 3, "side", "side"]})
    with pytest.raises(BackendError, match="symbolic axis 2"):
        engine_profile(m, "model")


def test_provider_profile_strings() -> None:
    shapes = profile_shapes({"a": ((1, 3), (4, 3), (8, 3)), "b": ((1,), (4,), (8,))})
    assert shapes == {"trt_profile_min_shapes": "a:1x3,b:1", "trt_profile_opt_shapes": "a:4x3,b:4",
                      "trt_profile_max_shapes": "a:8x3,b:8"}


def _with_engines(m: Manifest, *platforms: Platform) -> Manifest:
    for p in platforms:
        role = f"engine_model.{p.key}"
        m.files[role] = BundleFile(engine_file_name("model", p, "fp16", "0" * 8), "0" * 64, 1)
        m.engines.append(EngineInfo(model="model", file=role, tensorrt=p.tensorrt,
                                    compute_capability=p.compute_capability, gpu=p.gpu, precision="fp16",
                                    profile=profile_to_manifest({"input": ((1, 3), (32, 3), (32, 3))})))
    return m


def test_engine_file_names_carry_version_capability_and_precision() -> None:
    assert engine_file_name("unet", H100_TRT10, "fp16", "1a2b3c4d5e") == "unet.trt10.13.0-sm90.fp16.1a2b3c4d.plan"
    # the build number is not part of the key: the same release runs the same engines
    assert Platform("10.13.0.35", "9.0", "H100").key == "trt10.13.0-sm90"


def test_engine_for_picks_this_machines_engine_among_several() -> None:
    m = _with_engines(manifest("classify", {"input": ["batch", 3]}), ORIN_TRT10, H100_TRT10)
    assert engine_for(m, "model", "b", H100_TRT10).compute_capability == "9.0"
    assert engine_for(m, "model", "b", ORIN_TRT10).gpu == "Orin"
    assert engine_for(m, "model", "b", H100_TRT10).max_batch == 32


@pytest.mark.parametrize("here", [Platform("11.0.0", "9.0", "H100"), Platform("10.13.0", "8.9", "L4")])
def test_engine_for_another_version_or_gpu_is_refused_with_the_way_on(here: Platform) -> None:
    m = _with_engines(manifest("classify", {"input": ["batch", 3]}), H100_TRT10)
    with pytest.raises(BackendError) as err:
        engine_for(m, "model", "bundle", here)
    message = str(err.value)
    assert "TensorRT 10.13.0 on compute capability 9.0" in message
    assert f"TensorRT {here.tensorrt} on compute capability {here.compute_capability}" in message
    assert "flare export engine bundle" in message and "--backend" in message


def test_no_engine_at_all_says_how_to_build_one() -> None:
    with pytest.raises(BackendError, match="has no TensorRT engine for model; build one here"):
        engine_for(manifest("classify", {"input": ["batch", 3]}), "model", "b")  # no TensorRT needed


def _bundle_with_engine(bundle: Path, folder: Path, built_on: Platform) -> tuple[Path, Manifest]:
    """A copy of ``bundle`` whose manifest records a (fake) engine built on ``built_on``."""
    copy = folder / "b"
    shutil.copytree(bundle, copy)
    m = Manifest.load(copy)
    (copy / "model.plan").write_bytes(b"plan")
    m.files["engine_model.x"] = BundleFile.describe(copy, "model.plan")
    m.engines.append(EngineInfo(model="model", file="engine_model.x", tensorrt=built_on.tensorrt,
                                compute_capability=built_on.compute_capability, gpu=built_on.gpu, precision="fp32",
                                profile={"image": [[1, 3, 8, 8]] * 3}))
    m.save(copy)
    return copy, m


def test_manifest_round_trips_engines_and_refuses_an_unnamed_engine_file(bundle: Path, tmp_path: Path) -> None:
    copy, m = _bundle_with_engine(bundle, tmp_path, H100_TRT10)
    assert Manifest.load(copy).engines == m.engines
    m.engines[0].file = "engine_missing"
    with pytest.raises(Exception, match="does not name both files"):
        m.save(copy)


def test_cli_refuses_an_engine_built_elsewhere_in_one_line(bundle: Path, sky_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import flare.runtime.core.engines as engines

    copy, _ = _bundle_with_engine(bundle, tmp_path, ORIN_TRT10)
    monkeypatch.setattr(engines, "this_platform", lambda: H100_TRT10)
    image = sorted((sky_data / "hr").rglob("*.png"))[0]
    result = CliRunner().invoke(cli, ["classify", str(copy), str(image), "--backend", "trt-engine"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(r"built for TensorRT 10\.3\.0 .* this machine has TensorRT 10\.13\.0", lines[0])
    assert "Traceback" not in result.output
