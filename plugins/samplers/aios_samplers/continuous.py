"""Samplers for Gaussian diffusion: DDPM, DDIM, Euler(-ancestral), Heun, DPM-Solver++, UniPC.

Every sampler here has the same small surface, like diffusers' schedulers:

- ``set_timesteps(num_steps, schedule, prediction)`` picks the noise levels of ``num_steps``
  steps from the head's `aios.schedules.NoiseSchedule` and fills ``timesteps``: the training
  timestep of every model evaluation, in order (Heun evaluates twice per step, so its list is
  longer than ``num_steps``).
- ``step(model_output, index, sample, rng)`` takes the model's output at ``timesteps[index]``
  for ``sample`` and returns the sample to evaluate next (after the last evaluation, the
  result).
- ``sample(denoise, state, ...)``, the engine's entry (`aios.protocols.Sampler`), is the loop
  over those two, written once in `GaussianSampler`.

States are `aios.protocols.GaussianState`: ``x`` in the variance-preserving form
``x_t = alpha_t x_0 + sigma_t noise``; the head says whether its model predicts epsilon, x0 or v
and the sampler converts. The last step always lands on sigma = 0, i.e. returns a clean sample.
A `aios.protocols.Guided` model output is combined by classifier-free guidance first.

Noise levels come from ``spacing``: ``leading``, ``trailing`` or ``linspace`` timesteps of the
schedule, ``karras`` (EDM's rho = 7 spacing over the schedule's noise range) or ``logsnr`` (even
in log signal-to-noise ratio). Each sampler defaults to the spacing its method is known to work
best with from a pure-noise start: ``trailing``, and ``logsnr`` for DPM-Solver++ and UniPC.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from array_api_compat import is_numpy_array

from aios.protocols import PREDICTIONS, Denoiser, GaussianState, StepCallback
from aios.schedules import SPACINGS, NoiseSchedule
from aios_samplers.arrays import as_float, like, namespace, to_host
from aios_samplers.guidance import guided_prediction

#: Every spacing a continuous sampler accepts.
CONTINUOUS_SPACINGS = (*SPACINGS, "karras", "logsnr")


class GaussianSampler:
    """The shared loop and bookkeeping of the continuous samplers (not registered itself)."""

    family = "continuous"

    def __init__(self, spacing: str = "trailing") -> None:
        if spacing not in CONTINUOUS_SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; use one of "
                             f"{', '.join(CONTINUOUS_SPACINGS)}")
        self.spacing = spacing
        self.timesteps = np.zeros(0)

    # -- the step-level interface --------------------------------------------------------------

    def set_timesteps(self, num_steps: int, schedule: NoiseSchedule,
                      prediction: str = "epsilon") -> None:
        """Choose the noise levels of `num_steps` steps and reset the solver's history."""
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; use one of "
                             f"{', '.join(PREDICTIONS)}")
        if self.spacing == "karras":
            grid = schedule.karras_timesteps(num_steps)
        elif self.spacing == "logsnr":
            grid = schedule.logsnr_timesteps(num_steps)
        else:
            grid = schedule.timesteps(num_steps, self.spacing)
        alpha, sigma = schedule.alpha_sigma(grid)
        # Point i is where step i starts; point num_steps is the clean end (sigma = 0).
        self.grid = grid
        self.alphas = np.append(alpha, 1.0)
        self.sigmas = np.append(sigma, 0.0)
        self.num_steps = num_steps
        self.prediction = prediction
        # One (step, point) pair per model evaluation: which step it serves, at which point.
        self.plan = self._plan(num_steps)
        self.timesteps = np.array([grid[point] for _, point in self.plan])
        self._reset()

    def step(self, model_output: Any, index: int, sample: np.ndarray,
             rng: np.random.Generator | None = None) -> np.ndarray:
        """Advance with the model's output at evaluation `index`; return the next sample."""
        if not 0 <= index < len(self.plan):
            raise IndexError(f"evaluation {index} is outside 0..{len(self.plan) - 1}; call "
                             "set_timesteps first")
        sample = _as_sample(sample)
        output = guided_prediction(model_output)
        if is_numpy_array(sample) and not is_numpy_array(output):
            sample = like(sample, output, dtype=output.dtype)  # follow the model's device
        elif not is_numpy_array(sample) and is_numpy_array(output):
            output = like(output, sample, dtype=sample.dtype)
        if tuple(output.shape) != tuple(sample.shape):
            raise ValueError(f"the prediction has shape {tuple(output.shape)} but the sample "
                             f"has {tuple(sample.shape)}; denoise must return one value per "
                             "element")
        xp = namespace(output)
        if not bool(xp.all(xp.isfinite(output))):
            raise ValueError("the model returned NaN or infinite values")
        step_index, point = self.plan[index]
        x0, eps = self._x0_eps(output, sample, self.alphas[point], self.sigmas[point])
        return self._update(step_index, point, sample, x0, eps, rng)

    # -- the engine's entry --------------------------------------------------------------------

    def sample(
        self,
        denoise: Denoiser,
        state: GaussianState,
        *,
        num_steps: int,
        rng: np.random.Generator,
        callback: StepCallback | None = None,
    ) -> GaussianState:
        if not isinstance(state, GaussianState):
            raise TypeError(f"a continuous sampler needs an aios.protocols.GaussianState, got "
                            f"{type(state).__name__}; the head's initial_state must return one")
        original = state.x
        self.set_timesteps(num_steps, state.schedule, state.prediction)
        x = _as_sample(original)

        def shown(x: Any) -> Any:  # the state in the caller's dtype (and device)
            return _in_dtype_of(x, original)

        for index, t in enumerate(self.timesteps):
            output = denoise(replace(state, x=shown(x)), float(t))
            x = self.step(output, index, x, rng)
            step_index = self.plan[index][0]
            last_of_step = index + 1 == len(self.plan) or self.plan[index + 1][0] != step_index
            if callback is not None and last_of_step:
                callback(step_index, num_steps, replace(state, x=shown(x)))
        return replace(state, x=shown(x))

    @property
    def evaluations(self) -> int:
        """Model evaluations of the current `set_timesteps` (what `sample` will spend)."""
        return len(self.plan)

    # -- what each sampler defines -------------------------------------------------------------

    def _plan(self, num_steps: int) -> list[tuple[int, int]]:
        return [(i, i) for i in range(num_steps)]

    def _reset(self) -> None:
        """Forget the history of a previous run (multistep solvers keep one)."""

    def _update(self, step: int, point: int, x: np.ndarray, x0: np.ndarray, eps: np.ndarray,
                rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------------

    def _x0_eps(self, output: np.ndarray, x: np.ndarray, alpha: float,
                sigma: float) -> tuple[np.ndarray, np.ndarray]:
        if self.prediction == "epsilon":
            return (x - sigma * output) / alpha, output
        if self.prediction == "x0":
            return output, (x - alpha * output) / sigma
        # v = alpha * eps - sigma * x0, and alpha**2 + sigma**2 = 1
        return alpha * x - sigma * output, sigma * x + alpha * output

    def _ends(self, step: int) -> tuple[float, float, float, float]:
        return (self.alphas[step], self.sigmas[step], self.alphas[step + 1],
                self.sigmas[step + 1])


def _noise(rng: np.random.Generator | None, like_x: Any) -> Any:
    """Standard normal noise shaped like `like_x`, drawn by the caller's generator on the host
    (so a seed gives the same noise on every runtime) and moved to `like_x`'s device."""
    if rng is None:
        raise ValueError("this sampler is stochastic: pass rng=np.random.default_rng(seed)")
    return like(rng.standard_normal(tuple(like_x.shape)), like_x, dtype=like_x.dtype)


def _as_sample(x: Any) -> Any:
    """The running sample: float64 on the host (NumPy, as always); a torch tensor stays on its
    device in float64 if it is float64, else float32."""
    if is_numpy_array(x) or isinstance(x, list | tuple | float | int):
        return np.asarray(x, dtype=np.float64)
    return as_float(x, "the sample")


def _in_dtype_of(x: Any, original: Any) -> Any:
    if is_numpy_array(original) or isinstance(original, list | tuple):
        dtype = np.asarray(original).dtype
        dtype = dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
        return to_host(x).astype(dtype, copy=False)
    xp = namespace(original)
    target = original.dtype if xp.isdtype(original.dtype, "real floating") else xp.float64
    x = like(to_host(x), original) if is_numpy_array(x) else x
    return xp.astype(x, target)


def _check_eta(eta: float) -> float:
    if not eta >= 0:
        raise ValueError(f"eta (the share of fresh noise per step) must be >= 0, got {eta}")
    return float(eta)


class DDPM(GaussianSampler):
    """DDPM ancestral sampling: draw from the Gaussian posterior q(x_s | x_t, x0) each step.

    With skipped timesteps the posterior uses the effective beta 1 - alpha_bar_t/alpha_bar_s.
    """

    def __init__(self, spacing: str = "trailing") -> None:
        super().__init__(spacing)

    def _update(self, step, point, x, x0, eps, rng):
        bar_t, bar_s = self.alphas[step] ** 2, self.alphas[step + 1] ** 2
        beta = 1.0 - bar_t / bar_s
        mean = (math.sqrt(bar_s) * beta / (1 - bar_t)) * x0 \
            + (math.sqrt(bar_t / bar_s) * (1 - bar_s) / (1 - bar_t)) * x
        if self.sigmas[step + 1] == 0:
            return mean
        variance = beta * (1 - bar_s) / (1 - bar_t)
        return mean + math.sqrt(variance) * _noise(rng, x)


class DDIM(GaussianSampler):
    """DDIM (Song et al. 2021): eta = 0 is deterministic, eta = 1 is DDPM's posterior."""

    def __init__(self, spacing: str = "trailing", eta: float = 0.0) -> None:
        super().__init__(spacing)
        self.eta = _check_eta(eta)

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        if sigma_next == 0:
            return x0
        c = self.eta * sigma_next / sigma * math.sqrt(max(0.0, 1 - (alpha / alpha_next) ** 2))
        c = min(c, sigma_next)
        x_next = alpha_next * x0 + math.sqrt(sigma_next**2 - c**2) * eps
        if self.eta > 0:
            x_next = x_next + c * _noise(rng, x)
        return x_next


class Euler(GaussianSampler):
    """Euler's method on the probability-flow ODE in EDM's VE coordinates (x / alpha, sigma)."""

    def __init__(self, spacing: str = "trailing") -> None:
        super().__init__(spacing)

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        s, s_next = sigma / alpha, sigma_next / alpha_next
        x_ve = x / alpha
        slope = (x_ve - x0) / s
        return alpha_next * (x_ve + (s_next - s) * slope)


class EulerAncestral(GaussianSampler):
    """Euler steps down to sigma_down, then fresh noise up to the next level (k-diffusion)."""

    def __init__(self, spacing: str = "trailing", eta: float = 1.0) -> None:
        super().__init__(spacing)
        self.eta = _check_eta(eta)

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        s, s_next = sigma / alpha, sigma_next / alpha_next
        up = min(s_next, self.eta * math.sqrt(max(0.0, s_next**2 * (s**2 - s_next**2) / s**2)))
        down = math.sqrt(s_next**2 - up**2)
        x_ve = x / alpha
        x_ve = x_ve + (down - s) * (x_ve - x0) / s
        if up > 0:
            x_ve = x_ve + up * _noise(rng, x)
        return alpha_next * x_ve


class Heun(GaussianSampler):
    """EDM's Heun (2nd order): an Euler step, then the average of both ends' slopes.

    Two model evaluations per step except the last one into sigma = 0 (plain Euler).
    """

    def __init__(self, spacing: str = "trailing") -> None:
        super().__init__(spacing)

    def _plan(self, num_steps):
        plan = []
        for i in range(num_steps):
            plan.append((i, i))
            if i + 1 < num_steps:  # the last step ends at sigma = 0: no correction
                plan.append((i, i + 1))
        return plan

    def _reset(self):
        self._start: tuple[np.ndarray, np.ndarray] | None = None

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        s, s_next = sigma / alpha, sigma_next / alpha_next
        if point == step:  # predictor at the start of the step
            x_ve = x / alpha
            slope = (x_ve - x0) / s
            self._start = (x_ve, slope)
            return alpha_next * (x_ve + (s_next - s) * slope)
        assert self._start is not None, "the corrector ran before its predictor"
        x_ve, slope = self._start
        slope_next = (x / alpha_next - x0) / s_next
        return alpha_next * (x_ve + (s_next - s) * 0.5 * (slope + slope_next))


class DPMSolverPP(GaussianSampler):
    """DPM-Solver++ multistep in data prediction (Lu et al. 2022), orders 1-3, ODE or SDE.

    Steps are exact for the linear part in log-SNR lambda = log(alpha / sigma); earlier x0
    predictions extrapolate the rest. The first steps warm up with lower order, and the final
    step into sigma = 0 is first order (returns the last x0 prediction).
    """

    def __init__(self, spacing: str = "trailing", order: int = 2, sde: bool = False) -> None:
        super().__init__(spacing)
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order}")
        if sde and order == 3:
            raise ValueError("the SDE variant is implemented for orders 1 and 2")
        self.order = order
        self.sde = sde

    def _reset(self):
        self._x0s: list[np.ndarray] = []
        self._lambdas: list[float] = []

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        lam = math.log(alpha / sigma)
        self._x0s.append(x0)
        self._lambdas.append(lam)
        if sigma_next == 0:
            return x0
        h = math.log(alpha_next / sigma_next) - lam
        order = min(self.order, len(self._x0s))
        m0 = x0
        d1 = d2 = None
        if order >= 2:
            r0 = (lam - self._lambdas[-2]) / h
            d1_0 = (m0 - self._x0s[-2]) / r0
            d1 = d1_0
        if order == 3:
            r1 = (self._lambdas[-2] - self._lambdas[-3]) / h
            d1_1 = (self._x0s[-2] - self._x0s[-3]) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
        if self.sde:
            decay = -math.expm1(-2 * h)  # 1 - e^{-2h}
            x_next = (sigma_next / sigma * math.exp(-h)) * x + alpha_next * decay * m0
            if d1 is not None:
                x_next = x_next + 0.5 * alpha_next * decay * d1
            return x_next + sigma_next * math.sqrt(decay) * _noise(rng, x)
        phi1 = math.expm1(-h)  # e^{-h} - 1
        x_next = (sigma_next / sigma) * x - alpha_next * phi1 * m0
        if order == 2:
            x_next = x_next - 0.5 * alpha_next * phi1 * d1
        elif order == 3:
            x_next = x_next + alpha_next * (phi1 / h + 1) * d1 \
                - alpha_next * ((phi1 + h) / h**2 - 0.5) * d2
        return x_next


def dpm_solver_pp(spacing: str = "logsnr") -> DPMSolverPP:
    """DPM-Solver++(2M): second-order multistep ODE solver, one evaluation per step."""
    return DPMSolverPP(spacing, order=2)


def dpm_solver_pp_sde(spacing: str = "logsnr") -> DPMSolverPP:
    """SDE-DPM-Solver++(2M): the stochastic second-order multistep variant."""
    return DPMSolverPP(spacing, order=2, sde=True)


def dpm_solver_pp_3m(spacing: str = "logsnr") -> DPMSolverPP:
    """DPM-Solver++(3M): third-order multistep ODE solver, one evaluation per step."""
    return DPMSolverPP(spacing, order=3)


class UniPC(GaussianSampler):
    """UniPC (Zhao et al. 2023): a multistep predictor plus a corrector that reuses the next
    step's model evaluation, raising the order by one at no extra cost (B(h) = e^h - 1, "bh2").

    Data prediction, orders 1-3; warm-up and the last steps use lower order, the final step into
    sigma = 0 returns the last x0 prediction.
    """

    def __init__(self, spacing: str = "logsnr", order: int = 3) -> None:
        super().__init__(spacing)
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order}")
        self.order = order

    def _reset(self):
        self._x0s: list[np.ndarray] = []
        self._lambdas: list[float] = []
        self._previous: tuple[np.ndarray, float, int] | None = None  # x, sigma, order used

    def _update(self, step, point, x, x0, eps, rng):
        alpha, sigma, alpha_next, sigma_next = self._ends(step)
        lam = math.log(alpha / sigma)
        if self._previous is not None:  # correct the sample the model was just asked about
            x_prev, sigma_prev, order = self._previous
            x = self._advance(x_prev, sigma_prev, self._x0s, self._lambdas, lam, alpha, sigma,
                              order, corrector=x0)
        self._x0s.append(x0)
        self._lambdas.append(lam)
        if sigma_next == 0:
            return x0
        order = min(self.order, len(self._x0s), self.num_steps - step)
        self._previous = (x, sigma, order)
        return self._advance(x, sigma, self._x0s, self._lambdas,
                             math.log(alpha_next / sigma_next), alpha_next, sigma_next, order)

    @staticmethod
    def _advance(x: np.ndarray, sigma: float, x0s: list[np.ndarray], lambdas: list[float],
                 lam_next: float, alpha_next: float, sigma_next: float, order: int,
                 corrector: np.ndarray | None = None) -> np.ndarray:
        """One UniP step from (x, x0s[-1], lambdas[-1]) to lam_next, or UniC with `corrector`."""
        m0, lam = x0s[-1], lambdas[-1]
        h = lam_next - lam
        rks, diffs = [], []
        for i in range(1, order):
            rk = (lambdas[-(i + 1)] - lam) / h
            rks.append(rk)
            diffs.append((x0s[-(i + 1)] - m0) / rk)
        rks.append(1.0)
        hh = -h
        h_phi_1 = math.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = math.expm1(hh)
        factorial = 1
        rows, rhs = [], []
        for i in range(1, order + 1):
            rows.append([rk ** (i - 1) for rk in rks])
            rhs.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        matrix, vector = np.array(rows), np.array(rhs)
        x_next = (sigma_next / sigma) * x - alpha_next * h_phi_1 * m0
        if corrector is None:
            if not diffs:
                return x_next
            rhos = [0.5] if order == 2 else np.linalg.solve(matrix[:-1, :-1], vector[:-1])
            residual = sum(r * d for r, d in zip(rhos, diffs, strict=True))
            return x_next - alpha_next * b_h * residual
        rhos = [0.5] if order == 1 else np.linalg.solve(matrix, vector)
        residual = sum(r * d for r, d in zip(rhos[:-1], diffs, strict=True))
        return x_next - alpha_next * b_h * (residual + rhos[-1] * (corrector - m0))


def unipc(spacing: str = "logsnr") -> UniPC:
    """UniPC-3 (bh2): predictor-corrector multistep solver, one evaluation per step."""
    return UniPC(spacing, order=3)
