"""Diffusion samplers (deterministic DDIM and multistep DPM-Solver++) in plain numpy.

The runtime generates images from an exported UNet without torch, so it cannot use diffusers'
schedulers; these reimplement the two samplers the training code offers (``make_scheduler`` in
``flare.training.diffusion.model``) from the math, and reproduce what diffusers does for the
same config step for step: the same timesteps (so the UNet sees the same inputs), the same
noise levels, the same solver order at every step. A model sampled here and with torch from the
same noise and the same model outputs gives the same image, to float32 rounding.

A config is a training run's noise schedule or a Stable Diffusion pipeline's
``scheduler_config.json``. Only the keys the training code passes to diffusers are read; any
other key (``_class_name``, ``skip_prk_steps``, ``clip_sample``, ...) is ignored, as there, and
an absent key or a ``None`` value takes diffusers' default for that scheduler class.

Usage mirrors a diffusers sampling loop, with positions instead of timesteps::

    sampler = make_sampler("dpmpp", config, steps=20)
    x = noise * sampler.init_noise_sigma
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(unet(x, t), i, x)

and for img2img (diffusers' ``set_begin_index``)::

    sampler.start_at(start)
    x = sampler.add_noise(x0, noise, start)
    for i in range(start, len(sampler.timesteps)):
        x = sampler.step(unet(x, sampler.timesteps[i]), i, x)

Arithmetic is float64 throughout; results come back in the sample's float dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flare.runtime.foundation.errors import UsageError

__all__ = ["SAMPLERS", "DDIM", "DPMSolverPlusPlus", "Sampler", "alphas_cumprod", "beta_schedule", "make_sampler"]

#: Sampler names, as the CLI and the training code spell them.
SAMPLERS = ("ddim", "dpmpp")

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")

# diffusers' constructor defaults shared by DDIMScheduler and DPMSolverMultistepScheduler.
_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "steps_offset": 0,
}
# The one default the two classes disagree on.
_DEFAULT_SPACING = {"ddim": "leading", "dpmpp": "linspace"}

# The cosine ("squaredcos_cap_v2", GLIDE / improved DDPM) schedule caps each beta here so the
# last steps do not destroy the signal in one jump.
_COSINE_MAX_BETA = 0.999
_COSINE_OFFSET = 0.008

# DPM-Solver++ drops to lower orders over the last two steps of runs shorter than this
# (diffusers' ``lower_order_final``): few large steps make high-order extrapolation unstable.
_LOWER_ORDER_FINAL_BELOW = 15


def _get(config: Mapping[str, Any], key: str, default: Any) -> Any:
    """``config[key]``, or ``default`` where the key is absent or null (diffusers' rule)."""
    value = config.get(key)
    return default if value is None else value


def _as_int(value: Any, what: str) -> int:
    """``value`` as an int, refusing bools and non-integral numbers that would silently truncate."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not float(value).is_integer():
        raise UsageError(f"{what} must be a whole number, not {value!r}")
    return int(value)


def _as_float(value: Any, what: str) -> float:
    """``value`` as a float, with a message naming the key when a config holds something else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(f"{what} must be a number, not {value!r}")
    return float(value)


def beta_schedule(config: Mapping[str, Any]) -> np.ndarray:
    """Per-step noise variances (betas, float32) of the training noise schedule in ``config``.

    ``trained_betas`` wins when present, as in diffusers; otherwise ``beta_schedule`` is one of
    ``linear`` (betas evenly spaced from ``beta_start`` to ``beta_end``), ``scaled_linear``
    (their square roots evenly spaced: Stable Diffusion's schedule) or ``squaredcos_cap_v2``
    (betas that make the signal fraction follow a squared cosine, capped at 0.999, which
    ignores ``beta_start``/``beta_end``). A sampler must use the schedule the model was trained
    with, which is why this reads the same keys with the same defaults as diffusers. They are
    float32 because diffusers keeps them so: the noise levels the model was trained on are the
    float32-rounded ones (see :func:`alphas_cumprod`).
    """
    trained = config.get("trained_betas")
    if trained is not None:
        try:
            betas = np.asarray(trained, dtype=np.float64).reshape(-1).astype(np.float32)
        except (TypeError, ValueError):
            raise UsageError("trained_betas must be a list of numbers") from None
        if betas.size == 0:
            raise UsageError("trained_betas is empty; give one beta per training timestep")
    else:
        steps = _as_int(_get(config, "num_train_timesteps", _DEFAULTS["num_train_timesteps"]),
                        "num_train_timesteps")
        if steps < 1:
            raise UsageError(f"num_train_timesteps must be at least 1, not {steps}")
        kind = _get(config, "beta_schedule", _DEFAULTS["beta_schedule"])
        start = _as_float(_get(config, "beta_start", _DEFAULTS["beta_start"]), "beta_start")
        end = _as_float(_get(config, "beta_end", _DEFAULTS["beta_end"]), "beta_end")
        if kind == "linear":
            betas = _linspace32(start, end, steps)
        elif kind == "scaled_linear":
            if start < 0 or end < 0:
                raise UsageError(f"beta_start and beta_end must not be negative, not {start} and {end}")
            betas = _linspace32(math.sqrt(start), math.sqrt(end), steps) ** 2  # squared in float32
        elif kind == "squaredcos_cap_v2":
            betas = _cosine_betas(steps).astype(np.float32)
        else:
            raise UsageError(f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, not {kind!r}")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0) or np.any(betas >= 1):
        raise UsageError("every beta of the noise schedule must be above 0 and below 1")
    return betas


def _linspace32(start: float, end: float, n: int) -> np.ndarray:
    """``n`` evenly spaced float32 values from ``start`` to ``end``, rounded as torch rounds them.

    diffusers builds its betas with ``torch.linspace(..., dtype=float32)``, which fills the
    first half up from ``start`` and the second half down from ``end`` in steps of a float32
    ``step``, each value rounded once. ``np.linspace`` rounds differently in the last bit for
    about a third of the values; doing it torch's way gives the very betas the model was
    trained with, so the noise levels here equal diffusers' bit for bit.
    """
    first, last = np.float32(start), np.float32(end)
    if n == 1:
        return np.array([first], dtype=np.float32)
    step = np.float64((last - first) / np.float32(n - 1))  # float32 arithmetic, like torch
    i = np.arange(n, dtype=np.float64)
    rising = np.float64(first) + step * i
    falling = np.float64(last) - step * (n - 1 - i)
    return np.where(i < n // 2, rising, falling).astype(np.float32)


def _cosine_betas(steps: int) -> np.ndarray:
    """Betas for which the kept signal fraction ``alpha_bar(t)`` is ``cos((t + s) / (1 + s) * pi/2)^2``.

    Each beta is ``1 - alpha_bar(t_{i+1}) / alpha_bar(t_i)`` on the grid ``t_i = i / steps``,
    capped so no single step removes all the signal.
    """
    grid = np.arange(steps + 1, dtype=np.float64) / steps
    alpha_bar = np.cos((grid + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi / 2) ** 2
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], _COSINE_MAX_BETA)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """Signal fraction ``alpha_bar_t = prod(1 - beta_s, s <= t)`` kept at each training timestep (float64).

    Rounded as diffusers rounds it (``1 - beta`` in float32, the running product accumulated in
    float64 and stored as float32): training noised its images with exactly these levels, and
    the float32 rounding of 1000 factors moves the last ones by about 1e-6, which is a visible
    share of the whole gap between these samplers and diffusers' float32 ones. All arithmetic
    after this is float64.
    """
    alphas = 1.0 - np.asarray(betas, dtype=np.float32)
    return np.cumprod(alphas, dtype=np.float64).astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class _Schedule:
    """The parts of a config a sampler uses, checked once."""

    alphas_cumprod: np.ndarray  # float64: signal fraction kept at each training timestep
    num_train_timesteps: int
    prediction_type: str
    timestep_spacing: str
    steps_offset: int


def _read_schedule(config: Mapping[str, Any], sampler: str) -> _Schedule:
    """Validate ``config`` for ``sampler``, with diffusers' defaults for that scheduler class."""
    if not isinstance(config, Mapping):
        raise UsageError(f"a noise schedule config must be a mapping, not {type(config).__name__}")
    train_steps = _as_int(_get(config, "num_train_timesteps", _DEFAULTS["num_train_timesteps"]),
                          "num_train_timesteps")
    if train_steps < 1:
        raise UsageError(f"num_train_timesteps must be at least 1, not {train_steps}")
    betas = beta_schedule(config)
    if betas.size < train_steps:  # diffusers would index past the end mid-sampling
        raise UsageError(f"trained_betas has {betas.size} values but num_train_timesteps is {train_steps}; "
                         "give one beta per training timestep")
    prediction = _get(config, "prediction_type", _DEFAULTS["prediction_type"])
    if prediction not in PREDICTION_TYPES:
        raise UsageError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, not {prediction!r}")
    spacing = _get(config, "timestep_spacing", _DEFAULT_SPACING[sampler])
    if spacing not in TIMESTEP_SPACINGS:
        raise UsageError(f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, not {spacing!r}")
    offset = _as_int(_get(config, "steps_offset", _DEFAULTS["steps_offset"]), "steps_offset")
    return _Schedule(alphas_cumprod(betas), train_steps, prediction, spacing, offset)


def _check_timesteps(timesteps: np.ndarray, schedule: _Schedule, steps: int) -> np.ndarray:
    """Refuse timestep lists a sampler cannot step through (repeats, or outside the schedule).

    Too many steps for the spacing gives repeated timesteps (diffusers runs them anyway and
    divides by a zero step size); a large ``steps_offset`` runs off the end of the schedule.
    """
    if np.any(np.diff(timesteps) >= 0):
        raise UsageError(f"{steps} steps is too many for {schedule.timestep_spacing!r} timestep spacing over "
                         f"{schedule.num_train_timesteps} training timesteps (timesteps would repeat); use fewer")
    if timesteps[-1] < 0 or timesteps[0] >= schedule.alphas_cumprod.size:
        raise UsageError(f"steps_offset {schedule.steps_offset} puts timesteps outside the "
                         f"{schedule.num_train_timesteps} training timesteps")
    return timesteps


def _trailing(schedule: _Schedule, steps: int) -> np.ndarray:
    """``steps`` timesteps ending at the last training timestep, evenly spaced by ``T / steps``.

    diffusers builds these with ``np.arange(T, 0, -T/steps)``, which for some step counts (61 of
    the first 1000 when T = 1000, e.g. 61) yields one extra, near-zero element that becomes
    timestep -1, i.e. the *noisiest* timestep, as the last step. This takes exactly ``steps``
    values: the same timesteps otherwise, without that final one.
    """
    ratio = schedule.num_train_timesteps / steps
    return np.round(schedule.num_train_timesteps - np.arange(steps) * ratio).astype(np.int64) - 1


@dataclass(frozen=True)
class LinearStep:
    """One sampler step as the linear map it is, so it can run anywhere the arrays are.

    With ``x`` the sample and ``out`` the model's output at this step, the clean-sample
    prediction is ``x0 = data[0] * x + data[1] * out`` and the next sample is
    ``sample * x + output * out + sum(w * h for w, h in zip(history, H))``, where ``H`` are the
    last ``len(history)`` clean-sample predictions, oldest first, ending with this step's
    ``x0``. :meth:`Sampler.step` applies it to numpy arrays; the generator applies the same
    numbers on the device with the bundle's sampler-step graph (see ``flare.runtime.tasks.generate``).
    """

    data: tuple[float, float]
    sample: float
    output: float
    history: tuple[float, ...]


class Sampler(ABC):
    """A deterministic diffusion sampler: where to evaluate the model, and how to step.

    ``timesteps`` (int64, in sampling order) are what the UNet is given; ``step`` takes the
    position in that list, not the timestep, because positions are unambiguous where timesteps
    are not and are what a loop over the list has at hand. ``order`` is diffusers'
    ``scheduler.order`` (model evaluations per entry of ``timesteps``): 1 for both samplers, so
    an img2img start index needs no scaling. ``init_noise_sigma`` scales the starting noise.
    """

    order: int = 1
    init_noise_sigma: float = 1.0

    def __init__(self, schedule: _Schedule, timesteps: np.ndarray) -> None:
        self.schedule = schedule
        self.timesteps = timesteps
        self.prediction_type = schedule.prediction_type
        # sqrt of the kept signal fraction and of the noise fraction at each sampling timestep
        abar = schedule.alphas_cumprod[timesteps]
        self._alpha = np.sqrt(abar)
        self._sigma = np.sqrt(1.0 - abar)
        self._history: list[np.ndarray] = []  # clean-sample predictions of the steps taken, oldest first

    def __len__(self) -> int:
        return int(self.timesteps.size)

    def _position(self, index: int) -> int:
        """``index`` checked against ``timesteps``: a wrong position is a bug in the caller's loop."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int position in timesteps, not {type(index).__name__}")
        if not 0 <= index < self.timesteps.size:
            raise IndexError(f"index {index} is outside the {self.timesteps.size} sampling steps")
        return int(index)

    def start_at(self, index: int) -> None:
        """Begin sampling at ``timesteps[index]`` (img2img), forgetting any earlier steps.

        The same as diffusers' ``set_begin_index`` on a freshly set-up scheduler: a multistep
        solver builds its history up again from this step, starting first-order.
        """
        self._position(index)

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, index: int) -> np.ndarray:
        """``x0`` noised to the level of ``timesteps[index]``: ``alpha * x0 + sigma * noise``.

        This is the forward diffusion process; img2img starts its sampling from it, at the
        position it passes to :meth:`start_at`.
        """
        i = self._position(index)
        x0 = np.asarray(x0)
        noise = np.asarray(noise)
        out = self._alpha[i] * x0.astype(np.float64) + self._sigma[i] * noise.astype(np.float64)
        return out.astype(_out_dtype(x0))

    #: Clean-sample predictions a step may use (the multistep solver's history).
    history_size: int = 1

    @abstractmethod
    def linear_step(self, index: int) -> LinearStep:
        """The step from ``timesteps[index]`` as numbers (see :class:`LinearStep`), advancing
        the sampler's own state as :meth:`step` does; use one or the other in a pass."""

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray) -> np.ndarray:
        """The sample at the next position, from ``sample`` at ``timesteps[index]`` and the model's output there."""
        dtype = _out_dtype(np.asarray(sample))
        i, out, x = self._inputs(model_output, index, sample)
        step = self.linear_step(i)
        x0 = step.data[0] * x + step.data[1] * out
        self._history = (self._history + [x0])[-self.history_size:]
        result = step.sample * x + step.output * out
        for weight, h in zip(step.history, self._history[-len(step.history):]):
            result = result + weight * h
        return result.astype(dtype)

    def _data_and_noise(self, i: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """How the clean sample and the noise follow from ``(x, out)`` at position ``i``.

        With ``x = alpha * x0 + sigma * eps`` (alpha^2 + sigma^2 = 1), an epsilon model predicts
        ``eps``, a v model ``v = alpha * eps - sigma * x0``, a sample model ``x0``; each of the
        two is ``c0 * x + c1 * out``, and the pairs are returned.
        """
        a, s = float(self._alpha[i]), float(self._sigma[i])
        if self.prediction_type == "epsilon":
            return (1.0 / a, -s / a), (0.0, 1.0)
        if self.prediction_type == "v_prediction":
            return (a, -s), (s, a)
        return (0.0, 1.0), (1.0 / s, -a / s)  # "sample"

    def _inputs(self, model_output: np.ndarray, index: int, sample: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """Checked position and float64 copies of the arrays a step works on."""
        i = self._position(index)
        model_output = np.asarray(model_output)
        sample = np.asarray(sample)
        if model_output.shape != sample.shape:
            raise ValueError(f"model output shape {model_output.shape} differs from sample shape {sample.shape}")
        return i, model_output.astype(np.float64), sample.astype(np.float64)


def _out_dtype(sample: np.ndarray) -> np.dtype:
    """Results keep the caller's float precision (float32 in, float32 out); anything else gets float32."""
    return sample.dtype if np.issubdtype(sample.dtype, np.floating) else np.dtype(np.float32)


class DDIM(Sampler):
    """Deterministic DDIM (eta = 0): re-noise the predicted clean sample to the next level.

    As in diffusers (with ``clip_sample=False, set_alpha_to_one=False``, how the training code
    builds it), the level a step goes to is ``t - T // steps`` whatever the spacing, not the
    next entry of ``timesteps``: with ``linspace`` and ``trailing`` spacing the two differ a
    little, and matching diffusers keeps runtime and torch images identical. A target below 0
    uses the level of training timestep 0.
    """

    def __init__(self, config: Mapping[str, Any], steps: int) -> None:
        schedule = _read_schedule(config, "ddim")
        steps = _check_steps(steps, schedule)
        T = schedule.num_train_timesteps
        if schedule.timestep_spacing == "linspace":
            timesteps = np.round(np.linspace(0, T - 1, steps))[::-1].astype(np.int64)
        elif schedule.timestep_spacing == "leading":
            timesteps = np.arange(steps, dtype=np.int64)[::-1] * (T // steps) + schedule.steps_offset
        else:
            timesteps = _trailing(schedule, steps)
        super().__init__(schedule, _check_timesteps(np.ascontiguousarray(timesteps), schedule, steps))
        abar = schedule.alphas_cumprod
        prev = self.timesteps - T // steps
        prev_abar = np.where(prev >= 0, abar[np.maximum(prev, 0)], abar[0])
        self._prev_alpha = np.sqrt(prev_abar)
        self._prev_sigma = np.sqrt(1.0 - prev_abar)

    def linear_step(self, index: int) -> LinearStep:
        """DDIM's update ``x' = alpha' * x0 + sigma' * eps`` with both predicted at ``timesteps[index]``.

        Stateless: any position may be stepped at any time.
        """
        i = self._position(index)
        data, noise = self._data_and_noise(i)
        sigma = float(self._prev_sigma[i])
        return LinearStep(data=data, sample=sigma * noise[0], output=sigma * noise[1],
                          history=(float(self._prev_alpha[i]),))


class DPMSolverPlusPlus(Sampler):
    """Multistep DPM-Solver++ (Lu et al. 2022) of order 1, 2 or 3, as diffusers runs it.

    The ODE is solved in ``lambda = log(alpha / sigma)`` for the data prediction ``x0``:
    ``x(t) = sigma_t / sigma_s * x(s) + sigma_t * integral of e^lambda * x0(lambda)``. Each
    step expands ``x0`` about the current level in powers of lambda, with derivatives from the
    last ``order`` predictions (kept here as history), and integrates term by term; order 1
    is DDIM.
    The final level is noise-free (diffusers' ``final_sigmas_type="zero"``), so the last step
    returns the current ``x0`` prediction.

    The order of a step is what diffusers uses with ``solver_type="midpoint"`` and
    ``lower_order_final=True``: one more than the number of steps already taken since the
    start (there is no history yet), at most ``order``; always 1 on the last step; at most 2
    on the second to last when there are fewer than 15 steps in all.
    """

    def __init__(self, config: Mapping[str, Any], steps: int, order: int = 3) -> None:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in (1, 2, 3):
            raise UsageError(f"--order must be 1, 2 or 3 for DPM-Solver++, not {order!r}")
        schedule = _read_schedule(config, "dpmpp")
        steps = _check_steps(steps, schedule)
        T = schedule.num_train_timesteps
        # N + 1 points from the noisiest level down, dropping the clean end: the solver's
        # final step goes to sigma = 0 instead.
        if schedule.timestep_spacing == "linspace":
            timesteps = np.round(np.linspace(0, T - 1, steps + 1))[::-1][:-1].astype(np.int64)
        elif schedule.timestep_spacing == "leading":
            ratio = T // (steps + 1)
            timesteps = np.arange(1, steps + 1, dtype=np.int64)[::-1] * ratio + schedule.steps_offset
        else:
            timesteps = _trailing(schedule, steps)
        super().__init__(schedule, _check_timesteps(np.ascontiguousarray(timesteps), schedule, steps))
        self.solver_order = int(order)
        abar = schedule.alphas_cumprod[self.timesteps]
        # log-SNR / 2 at each level, then the final, noise-free one (lambda = +inf)
        lam = 0.5 * (np.log(abar) - np.log1p(-abar))
        self._lambda = np.append(lam, np.inf)
        self._next_alpha = np.append(self._alpha[1:], 1.0)
        self._next_sigma = np.append(self._sigma[1:], 0.0)
        self.history_size = self.solver_order
        self._held = 0  # x0 predictions held for the next step, this step's included
        self._next: int | None = None  # the position the next step must be at; None: any

    def start_at(self, index: int) -> None:
        """Begin sampling at ``timesteps[index]``, with an empty history (so a first-order step)."""
        self._next = self._position(index)
        self._history, self._held = [], 0

    def _step_order(self, i: int) -> int:
        """The solver order diffusers uses at position ``i`` given the history now held."""
        n = self.timesteps.size
        order = min(self.solver_order, self._held)
        if i == n - 1:  # forced by the noise-free final level (and lower_order_final)
            return 1
        if i == n - 2 and n < _LOWER_ORDER_FINAL_BELOW:
            return min(order, 2)
        return order

    def linear_step(self, index: int) -> LinearStep:
        """One DPM-Solver++ step from ``timesteps[index]`` to the next level.

        Steps must come in order from the start (position 0, or the one given to
        :meth:`start_at`, or wherever the first step is): the solver extrapolates from the
        previous steps' predictions. After the last step a new pass may begin at any position.
        """
        i = self._position(index)
        if self._next is not None and i != self._next:
            raise ValueError(f"DPM-Solver++ stepped at position {i} but the next step is {self._next}; "
                             "steps must come in order (call start_at() to begin a new pass)")
        self._held = min(self._held + 1, self.solver_order)
        order = self._step_order(i)
        alpha_t, sigma_t = self._next_alpha[i], self._next_sigma[i]
        data, _ = self._data_and_noise(i)
        if sigma_t == 0.0:  # noise-free target: the first-order step lands exactly on x0
            step = LinearStep(data=data, sample=0.0, output=0.0, history=(1.0,))
        else:  # the integral's weights on the last ``order`` predictions, from the formula itself
            weights = self._integral(i, order, list(np.eye(order)))
            step = LinearStep(data=data, sample=float(sigma_t / self._sigma[i]), output=0.0,
                              history=tuple(float(alpha_t * w) for w in weights))
        self._next = i + 1 if i + 1 < self.timesteps.size else None
        if self._next is None:
            self._held = 0
        return step

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray) -> np.ndarray:
        result = super().step(model_output, index, sample)
        if self._next is None:  # a pass ended: the next one starts without history
            self._history = []
        return result

    def _integral(self, i: int, order: int, m: list[np.ndarray]) -> np.ndarray:
        """``integral of e^(lambda - lambda_t) * x0(lambda)`` over the step, x0 as a polynomial.

        ``m`` are the last ``order`` x0 predictions, oldest first; given the unit vectors
        instead, the same formula returns the weights of a linear step (:class:`LinearStep`).
        With ``h`` the step in lambda and ``phi1 = e^-h - 1``, a constant x0 integrates to
        ``-phi1 * D0``. Order 2 (diffusers' "midpoint" form) adds ``-phi1 / 2 * D1``, with
        ``D1 = h * dx0/dlambda`` from the backward difference over the last two levels. Order 3
        takes ``D1`` and ``D2 = h^2/2 * d2x0/dlambda2`` from divided differences over the last
        three levels (unevenly spaced in lambda) and adds ``(phi1/h + 1) * D1``, the exact
        integral of the linear term, and ``-((phi1 + h)/h^2 - 1/2) * D2``. That last weight is
        diffusers' (and the DPM-Solver reference code's): it is half the exact integral of the
        quadratic term for this ``D2``, so the step is not exact for quadratic x0. It is kept
        because matching the torch side, not the textbook, is this module's job.
        """
        lam = self._lambda
        h = lam[i + 1] - lam[i]
        phi1 = np.expm1(-h)
        if order == 1:
            return -phi1 * m[-1]
        r0 = (lam[i] - lam[i - 1]) / h
        d1_0 = (m[-1] - m[-2]) / r0
        if order == 2:
            return -phi1 * (m[-1] + 0.5 * d1_0)
        r1 = (lam[i - 1] - lam[i - 2]) / h
        d1_1 = (m[-2] - m[-3]) / r1
        d2 = (d1_0 - d1_1) / (r0 + r1)
        d1 = d1_0 + r0 * d2
        return -phi1 * m[-1] + (phi1 / h + 1.0) * d1 - ((phi1 + h) / h**2 - 0.5) * d2


def _check_steps(steps: int, schedule: _Schedule) -> int:
    """``steps`` as an int between 1 and the number of training timesteps."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise UsageError(f"--steps must be a whole number, not {steps!r}")
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, not {steps}")
    if steps > schedule.num_train_timesteps:
        raise UsageError(f"--steps ({steps}) cannot exceed the model's {schedule.num_train_timesteps} "
                         "training timesteps")
    return int(steps)


def make_sampler(name: str, config: Mapping[str, Any], steps: int, order: int = 3) -> Sampler:
    """A fresh sampler ``name`` (one of :data:`SAMPLERS`) for ``steps`` steps of ``config``'s schedule.

    Built as the training code builds its diffusers scheduler, so the two agree: ``dpmpp`` is
    DPM-Solver++ of ``order`` 1-3, ``ddim`` is deterministic DDIM (``order`` is ignored). A
    sampler keeps per-pass state (the multistep history), so make one per sampling pass or
    call ``start_at`` between passes.
    """
    if name == "dpmpp":
        return DPMSolverPlusPlus(config, steps, order)
    if name == "ddim":
        return DDIM(config, steps)
    raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)}, not {name!r}")

