"""The numpy samplers step for step against the diffusers schedulers the torch side uses.

Both sides get the same starting sample and, at every step, the same random "model output"
(independent of the sample: the samplers must agree whatever the model says). Two comparisons:

* float32, as they run: our float64 arithmetic against diffusers' float32 arithmetic, so the
  tolerance is float32 rounding accumulated over the steps, relative to the sample's size
  (random model outputs let samples grow to hundreds, where a float32 ulp is already ~3e-5);
* float64: diffusers made to compute in float64 too, where the two must agree to 1e-12. This
  is the proof that the algorithms are the same; the float32 test shows the runtime gets what
  torch gets.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import flare.runtime
from flare.runtime.core.schedulers import (
    DDIM,
    SAMPLERS,
    DPMSolverPlusPlus,
    Sampler,
    alphas_cumprod,
    beta_schedule,
    make_sampler,
)
from flare.runtime.foundation.errors import UsageError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
dpm_module = pytest.importorskip("diffusers.schedulers.scheduling_dpmsolver_multistep")

# What training/diffusion/model.py's make_scheduler passes on (test_reference_is_training_make_scheduler
# keeps this mirror honest).
SCHEDULER_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                  "prediction_type", "timestep_spacing", "steps_offset")

OURS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
# A Stable Diffusion pipeline's scheduler/scheduler_config.json, keys we must ignore included.
SD_PIPELINE = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False, "timestep_spacing": "leading", "prediction_type": "epsilon",
}
CONFIGS: dict[str, dict[str, Any]] = {
    "ours-eps": {**OURS, "prediction_type": "epsilon"},
    "ours-v": {**OURS, "prediction_type": "v_prediction"},
    "defaults": {},  # diffusers' defaults: linear betas 1e-4..0.02, epsilon, per-class spacing
    "linear-v": {"beta_schedule": "linear", "prediction_type": "v_prediction"},
    "cosine-eps": {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"},
    "cosine-v": {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"},
    "sd-pipeline": SD_PIPELINE,
    "linspace": {**OURS, "timestep_spacing": "linspace"},  # DDIM's default is leading
    "leading": {**OURS, "timestep_spacing": "leading"},  # DPM-Solver's default is linspace
    "trailing": {**OURS, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
    "sample-pred": {**OURS, "prediction_type": "sample"},
    "trained-betas": {"num_train_timesteps": 200, "trained_betas": np.linspace(2e-4, 0.04, 200).tolist()},
}
SOLVERS = [("ddim", 1), ("dpmpp", 1), ("dpmpp", 2), ("dpmpp", 3)]
# below and above 15, where DPM-Solver++'s lower-order-final rule changes; 1 and 2 are all edge
STEPS = (1, 2, 5, 10, 14, 15, 20, 50)
SHAPE = (2, 4, 8, 8)

# diffusers' set_timesteps calls np.array on a torch tensor, which numpy 2 warns about each time.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def reference(name: str, config: dict[str, Any], order: int) -> Any:
    """The diffusers scheduler the training code builds (make_scheduler) for this sampler."""
    kwargs = {k: v for k, v in config.items() if k in SCHEDULER_KEYS and v is not None}
    if name == "dpmpp":
        return diffusers.DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=order)
    return diffusers.DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=False)


def solver_id(name: str, order: int) -> str:
    return "ddim" if name == "ddim" else f"dpmpp{order}"


def step_cases() -> list[Any]:
    return [pytest.param(name, order, cfg, steps, id=f"{solver_id(name, order)}-{cfg}-{steps}steps")
            for name, order in SOLVERS for cfg in CONFIGS for steps in STEPS]


def float32_rtol(name: str, order: int) -> float:
    """diffusers' third-order update loses ~3 digits in float32 at small step sizes.

    Its coefficient ``(exp(-h) - 1 + h) / h**2 - 0.5`` cancels: at 50 steps (h ~ 0.06) the float32
    value is off by ~3e-4 relative, so torch's own result is that far from exact, and the
    float64 test is what pins order 3 down.
    """
    return 5e-5 if order == 3 and name == "dpmpp" else 1e-5


def assert_close(ours: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> None:
    """Elementwise rtol, plus an absolute allowance of rtol times the array's largest value."""
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def run_both(name: str, order: int, config: dict[str, Any], steps: int, dtype: type,
             ref: Any | None = None) -> None:
    """Sample with both from the same noise and model outputs, comparing every step."""
    ours = make_sampler(name, config, steps, order)
    ref = ref if ref is not None else reference(name, config, order)
    if ref.num_inference_steps is None:
        ref.set_timesteps(steps)
    assert ours.timesteps.dtype == np.int64
    np.testing.assert_array_equal(ours.timesteps, ref.timesteps.numpy())
    assert (ours.order, ours.init_noise_sigma) == (ref.order, ref.init_noise_sigma)
    rtol = 1e-12 if dtype is np.float64 else float32_rtol(name, order)
    rng = np.random.default_rng(steps)
    x = rng.standard_normal(SHAPE).astype(dtype)
    xt = torch.from_numpy(x.copy())
    for i, t in enumerate(ref.timesteps):
        out = rng.standard_normal(SHAPE).astype(dtype)
        x = ours.step(out, i, x)
        xt = ref.step(torch.from_numpy(out), t, xt).prev_sample
        assert x.dtype == dtype
        assert_close(x, xt.numpy(), rtol, f"step {i} (timestep {int(t)})")


@pytest.mark.parametrize(("name", "order", "cfg", "steps"), step_cases())
def test_steps_match_diffusers_float32(name: str, order: int, cfg: str, steps: int) -> None:
    run_both(name, order, CONFIGS[cfg], steps, np.float32)


class _Float64Torch(types.ModuleType):
    """``torch`` with ``float32`` meaning float64, for diffusers' hard-coded upcast in DPM steps."""

    float32 = torch.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def float64_reference(name: str, config: dict[str, Any], order: int, steps: int) -> Any:
    """A diffusers scheduler whose noise schedule (and, for DPM, arithmetic) is float64."""
    ref = reference(name, config, order)
    ref.set_timesteps(steps)
    abar = torch.from_numpy(alphas_cumprod(beta_schedule(config)))
    if name == "ddim":
        ref.alphas_cumprod = abar
        ref.final_alpha_cumprod = abar[0]  # set_alpha_to_one=False
    else:
        sigmas = ((1 - abar) / abar).sqrt()[ref.timesteps]
        ref.sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    return ref


@pytest.mark.parametrize(("name", "order", "cfg", "steps"), step_cases())
def test_steps_match_diffusers_float64(name: str, order: int, cfg: str, steps: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpm_module, "torch", _Float64Torch("torch"))
    config = CONFIGS[cfg]
    run_both(name, order, config, steps, np.float64, float64_reference(name, config, order, steps))


@pytest.mark.parametrize("cfg", ["defaults", "ours-eps", "cosine-eps", "trained-betas", "sd-pipeline"])
def test_noise_schedule_is_diffusers_bit_for_bit(cfg: str) -> None:
    """The betas and alpha_bar are the float32 values diffusers (and so training) used."""
    config = CONFIGS[cfg]
    ref = reference("ddim", config, 1)
    betas = beta_schedule(config)
    assert betas.dtype == np.float32
    np.testing.assert_array_equal(betas, ref.betas.numpy())
    np.testing.assert_array_equal(alphas_cumprod(betas).astype(np.float32), ref.alphas_cumprod.numpy())


def img2img_cases() -> list[Any]:
    return [pytest.param(name, order, cfg, steps, strength,
                         id=f"{solver_id(name, order)}-{cfg}-{steps}steps-strength{strength}")
            for name, order in SOLVERS for cfg in ("ours-eps", "ours-v", "sd-pipeline")
            for steps in (10, 20) for strength in (0.3, 0.75, 1.0)]


@pytest.mark.parametrize(("name", "order", "cfg", "steps", "strength"), img2img_cases())
def test_img2img_begin_index_matches_diffusers(name: str, order: int, cfg: str, steps: int, strength: float) -> None:
    """add_noise + start_at as the torch side's img2img does it (set_begin_index, add_noise)."""
    config = CONFIGS[cfg]
    ref = reference(name, config, order)
    ref.set_timesteps(steps)
    start = max(0, steps - max(1, round(steps * strength)))
    timesteps = ref.timesteps[start * ref.order:]
    if hasattr(ref, "set_begin_index"):
        ref.set_begin_index(start * ref.order)
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal(SHAPE).astype(np.float32)
    noise = rng.standard_normal(SHAPE).astype(np.float32)
    xt = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), timesteps[:1].repeat(SHAPE[0]))

    ours = make_sampler(name, config, steps, order)
    # a pass already under way must not leak into the new one
    ours.step(rng.standard_normal(SHAPE).astype(np.float32), 0, noise)
    ours.start_at(start * ours.order)
    x = ours.add_noise(x0, noise, start)
    assert x.dtype == np.float32
    assert_close(x, xt.numpy(), 1e-6, "add_noise")
    rtol = float32_rtol(name, order)
    for i, t in zip(range(start, steps), timesteps, strict=True):
        assert int(ours.timesteps[i]) == int(t)
        out = rng.standard_normal(SHAPE).astype(np.float32)
        x = ours.step(out, i, x)
        xt = ref.step(torch.from_numpy(out), t, xt).prev_sample
        assert_close(x, xt.numpy(), rtol, f"step {i} (timestep {int(t)})")


@pytest.mark.parametrize("cfg", ["ours-eps", "sd-pipeline"])
def test_reference_is_training_make_scheduler(cfg: str) -> None:
    """The diffusers schedulers above are the ones training/diffusion/model.py builds."""
    from flare.training.diffusion.model import make_scheduler

    for name, order in SOLVERS:
        assert dict(make_scheduler(name, CONFIGS[cfg], order).config) == dict(reference(name, CONFIGS[cfg], order).config)


def test_make_sampler_classes_and_names() -> None:
    assert SAMPLERS == ("ddim", "dpmpp")
    ddim, dpm = make_sampler("ddim", {}, 10), make_sampler("dpmpp", {}, 10, order=2)
    assert isinstance(ddim, DDIM) and isinstance(ddim, Sampler)
    assert isinstance(dpm, DPMSolverPlusPlus) and isinstance(dpm, Sampler)
    assert ddim.order == dpm.order == 1 and ddim.init_noise_sigma == dpm.init_noise_sigma == 1.0
    assert len(ddim) == len(dpm) == 10


def test_trailing_spacing_has_exactly_steps_timesteps() -> None:
    """diffusers' trailing spacing gives 62 timesteps for 61 steps, the last one -1 (the
    noisiest level); ours gives the 61 it asked for, equal to diffusers' first 61."""
    config = {**OURS, "timestep_spacing": "trailing"}
    for name in SAMPLERS:
        ref = reference(name, config, 2)
        ref.set_timesteps(61)
        ours = make_sampler(name, config, 61, 2)
        assert len(ref.timesteps) == 62 and int(ref.timesteps[-1]) == -1  # the diffusers quirk
        np.testing.assert_array_equal(ours.timesteps, ref.timesteps.numpy()[:61])
        assert ours.timesteps[-1] >= 0


def dpm_pass(sampler: Sampler, outputs: list[np.ndarray], x: np.ndarray, start: int = 0) -> np.ndarray:
    for i, out in zip(range(start, len(sampler)), outputs, strict=False):
        x = sampler.step(out, i, x)
    return x


def test_dpm_sampler_reusable_after_a_full_pass() -> None:
    rng = np.random.default_rng(3)
    outs = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(12)]
    x = rng.standard_normal(SHAPE).astype(np.float32)
    sampler = make_sampler("dpmpp", OURS, 12, 3)
    first = dpm_pass(sampler, outs, x)
    np.testing.assert_array_equal(dpm_pass(sampler, outs, x), first)
    np.testing.assert_array_equal(dpm_pass(make_sampler("dpmpp", OURS, 12, 3), outs, x), first)


def test_dpm_steps_must_come_in_order() -> None:
    sampler = make_sampler("dpmpp", OURS, 10, 2)
    x = np.zeros(SHAPE, np.float32)
    sampler.step(x, 0, x)
    with pytest.raises(ValueError, match="in order"):
        sampler.step(x, 2, x)
    sampler.start_at(4)
    with pytest.raises(ValueError, match="in order"):
        sampler.step(x, 3, x)
    sampler.step(x, 4, x)


def test_step_checks_its_arguments() -> None:
    sampler = make_sampler("ddim", OURS, 10)
    x = np.zeros(SHAPE, np.float32)
    with pytest.raises(IndexError):
        sampler.step(x, 10, x)
    with pytest.raises(IndexError):
        sampler.start_at(-1)
    with pytest.raises(ValueError, match="shape"):
        sampler.step(x[:1], 0, x)
    assert sampler.step(x.astype(np.float64), 0, x.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize(("args", "match"), [
    pytest.param(("euler", OURS, 10), "sampler must be one of", id="unknown-sampler"),
    pytest.param(("ddim", OURS, 0), "at least 1", id="zero-steps"),
    pytest.param(("dpmpp", OURS, -3), "at least 1", id="negative-steps"),
    pytest.param(("ddim", OURS, 2.5), "whole number", id="fractional-steps"),
    pytest.param(("ddim", {"num_train_timesteps": 10}, 11), "cannot exceed", id="more-steps-than-training"),
    pytest.param(("dpmpp", OURS, 10, 0), "order", id="order-0"),
    pytest.param(("dpmpp", OURS, 10, 4), "order", id="order-4"),
    pytest.param(("ddim", {"beta_schedule": "cosine"}, 10), "beta_schedule", id="unknown-beta-schedule"),
    pytest.param(("dpmpp", {"prediction_type": "flow_prediction"}, 10), "prediction_type", id="unknown-prediction"),
    pytest.param(("ddim", {"timestep_spacing": "karras"}, 10), "timestep_spacing", id="unknown-spacing"),
    pytest.param(("dpmpp", {"num_train_timesteps": 10, "timestep_spacing": "leading"}, 10), "repeat",
                 id="too-many-steps-for-spacing"),
    pytest.param(("ddim", {"num_train_timesteps": 10, "steps_offset": 5}, 2), "steps_offset", id="offset-past-end"),
    pytest.param(("ddim", {"num_train_timesteps": 10, "trained_betas": [0.01] * 5}, 2), "trained_betas",
                 id="too-few-trained-betas"),
    pytest.param(("ddim", {"trained_betas": [0.5, 1.5]}, 2), "beta", id="beta-above-1"),
    pytest.param(("ddim", ["not", "a", "mapping"], 2), "mapping", id="config-not-mapping"),
    pytest.param(("ddim", {"beta_end": "0.012"}, 2), "beta_end", id="beta-end-not-a-number"),
    pytest.param(("ddim", {"trained_betas": ["a", "b"]}, 2), "trained_betas", id="trained-betas-not-numbers"),
])
def test_user_mistakes_raise_usage_error(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(UsageError, match=match) as err:
        make_sampler(*args)
    assert "\n" not in str(err.value)


def test_beta_schedule_rejects_unknown_schedule() -> None:
    with pytest.raises(UsageError, match="beta_schedule"):
        beta_schedule({"beta_schedule": "sigmoid"})


def test_importing_schedulers_loads_no_torch() -> None:
    forbidden = ("torch", "torchvision", "diffusers", "flare.training", "flare.export")
    code = ("import sys, flare.runtime.core.schedulers\n"
            f"print(','.join(m for m in {forbidden!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(flare.runtime.__file__).anchor)  # not the checkout: only the installed flare
    assert result.stdout.strip() == "", f"flare.runtime.core.schedulers imports {result.stdout.strip()}"
