"""Noise schedules shared by heads and samplers.

Two kinds of forward process, two kinds of schedule:

- **Gaussian** (`NoiseSchedule`): a noisy sample is ``x_t = alpha_t * x_0 + sigma_t * noise``
  with ``alpha_t**2 + sigma_t**2 == 1`` (the variance-preserving, "VP", view that DDPM-style
  models are trained on). The same schedule seen as variance-exploding ("VE", the EDM/Karras
  view) is ``x_t / alpha_t = x_0 + s_t * noise`` with ``s_t = sigma_t / alpha_t``. A schedule is
  a table of the cumulative product ``alphas_cumprod`` over the training timesteps
  ``0 .. N-1``; fractional timesteps (Karras grids fall between table entries) interpolate
  ``log s`` linearly, so `sigma_to_t` inverts `ve_sigma` exactly. The head owns the schedule it
  was trained with; samplers only read it.
- **Masked** (`MaskingSchedule`): ``alpha(t)`` is the probability that a token is still
  *unmasked* at time ``t`` in ``[0, 1]`` (``alpha(0) = 1``: clean data; ``alpha(1) = 0``: all
  masks). Masked samplers own this schedule: it decides how many tokens each step reveals.

Custom schedules come from a callable or a table, also from a config value (`schedule_from_config`,
`masking_schedule`), so a YAML file can say ``schedule: cosine``, ``schedule: my.module:fn`` or
``schedule: {alphas_cumprod: [...]}``.

Data never names code unless the user says so: a ``module:function`` string imports and calls
Python, so it is refused unless code is trusted (`trust_code`, the command line's
``--trust-code``, or ``AIOS_TRUST_CODE=1``). Config files and model directories are data that
travel (downloads, shared configs); a table or a built-in name does everything else they need.
A callable passed from Python is code the caller wrote, and always accepted.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aios.errors import AiosError

#: Timestep spacings of `NoiseSchedule.timesteps` (the names diffusers uses for the same rules).
SPACINGS = ("leading", "trailing", "linspace")

#: EDM's defaults for Karras sigmas (Karras et al. 2022, table 1).
KARRAS_SIGMA_MIN = 0.002
KARRAS_SIGMA_MAX = 80.0
KARRAS_RHO = 7.0


# -- beta schedules ----------------------------------------------------------------------------


def linear_betas(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """DDPM's linear betas (Ho et al. 2020): the schedule most pixel models are trained with."""
    _check_count(num_train_timesteps, "num_train_timesteps")
    return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)


def cosine_betas(
    num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2)**2.

    Betas are clipped at `max_beta` so the last step stays invertible.
    """
    _check_count(num_train_timesteps, "num_train_timesteps")

    def alpha_bar(u: np.ndarray) -> np.ndarray:
        return np.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    grid = np.arange(num_train_timesteps + 1, dtype=np.float64) / num_train_timesteps
    betas = 1.0 - alpha_bar(grid[1:]) / alpha_bar(grid[:-1])
    return np.minimum(betas, max_beta)


def karras_sigmas(
    num_steps: int,
    sigma_min: float = KARRAS_SIGMA_MIN,
    sigma_max: float = KARRAS_SIGMA_MAX,
    rho: float = KARRAS_RHO,
) -> np.ndarray:
    """Karras et al. (EDM) VE noise levels, from `sigma_max` down to `sigma_min` (decreasing).

    ``sigma_i = (sigma_max**(1/rho) + i/(n-1) * (sigma_min**(1/rho) - sigma_max**(1/rho)))**rho``
    puts more steps at low noise, where detail is decided.
    """
    _check_count(num_steps, "num_steps")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if num_steps == 1:
        return np.array([sigma_max], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, num_steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


# -- the Gaussian schedule ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A Gaussian diffusion schedule: ``alphas_cumprod`` over training timesteps ``0 .. N-1``.

    Build one with `linear`, `cosine`, `from_betas`, `from_alphas_cumprod`, `from_sigmas` (a VE
    table), `from_callable` or `schedule_from_config`.
    """

    alphas_cumprod: np.ndarray

    def __post_init__(self) -> None:
        table = np.asarray(self.alphas_cumprod, dtype=np.float64)
        if table.ndim != 1 or table.size < 2:
            raise ValueError("alphas_cumprod must be a 1-D table of at least 2 values, got "
                             f"shape {table.shape}")
        if not np.all(np.isfinite(table)) or np.any(table <= 0) or np.any(table >= 1):
            raise ValueError("alphas_cumprod must lie strictly between 0 and 1 (no NaN); "
                             "clip betas below 1 or drop a final value of 0")
        if np.any(np.diff(table) >= 0):
            raise ValueError("alphas_cumprod must decrease strictly with the timestep "
                             "(more noise at later timesteps)")
        table.setflags(write=False)
        object.__setattr__(self, "alphas_cumprod", table)
        log_s = 0.5 * (np.log1p(-table) - np.log(table))
        log_s.setflags(write=False)
        object.__setattr__(self, "_log_ve", log_s)

    # constructors

    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> NoiseSchedule:
        return cls.from_betas(linear_betas(num_train_timesteps, beta_start, beta_end))

    @classmethod
    def cosine(cls, num_train_timesteps: int = 1000, s: float = 0.008,
               max_beta: float = 0.999) -> NoiseSchedule:
        return cls.from_betas(cosine_betas(num_train_timesteps, s, max_beta))

    @classmethod
    def from_betas(cls, betas: Sequence[float] | np.ndarray) -> NoiseSchedule:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or np.any(~np.isfinite(betas)) or np.any(betas <= 0) \
                or np.any(betas >= 1):
            raise ValueError("betas must be a 1-D table of values strictly between 0 and 1")
        return cls(np.cumprod(1.0 - betas))

    @classmethod
    def from_alphas_cumprod(cls, table: Sequence[float] | np.ndarray) -> NoiseSchedule:
        return cls(np.asarray(table, dtype=np.float64))

    @classmethod
    def from_sigmas(cls, sigmas: Sequence[float] | np.ndarray) -> NoiseSchedule:
        """From a VE table ``s_t`` (increasing), e.g. `karras_sigmas(...)[::-1]` for EDM."""
        sigmas = np.asarray(sigmas, dtype=np.float64)
        if sigmas.ndim != 1 or np.any(~np.isfinite(sigmas)) or np.any(sigmas <= 0):
            raise ValueError("VE sigmas must be a 1-D table of positive values")
        return cls(1.0 / (1.0 + sigmas**2))

    @classmethod
    def from_callable(cls, alpha_bar: Callable[[np.ndarray], Any],
                      num_train_timesteps: int = 1000) -> NoiseSchedule:
        """From a function of ``u = t / (N - 1)`` in ``[0, 1]`` returning alpha_bar(u)."""
        _check_count(num_train_timesteps, "num_train_timesteps")
        grid = np.linspace(0.0, 1.0, num_train_timesteps)
        return cls(np.asarray(alpha_bar(grid), dtype=np.float64).reshape(-1))

    # views

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.size)

    @property
    def sigma_min(self) -> float:
        """The smallest VE noise level of the table (timestep 0)."""
        return float(np.exp(self._log_ve[0]))  # type: ignore[attr-defined]

    @property
    def sigma_max(self) -> float:
        """The largest VE noise level of the table (the last timestep, where sampling starts)."""
        return float(np.exp(self._log_ve[-1]))  # type: ignore[attr-defined]

    def ve_sigma(self, t: Any) -> np.ndarray:
        """VE noise level ``s_t = sigma_t / alpha_t`` at (possibly fractional) timesteps."""
        t = self._check_t(t)
        index = np.arange(self.num_train_timesteps, dtype=np.float64)
        return np.exp(np.interp(t, index, self._log_ve))  # type: ignore[attr-defined]

    def alpha_sigma(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """VP coefficients ``(alpha_t, sigma_t)`` of ``x_t = alpha_t x_0 + sigma_t noise``."""
        return vp_from_ve(self.ve_sigma(t))

    def sigma_to_t(self, sigma: Any) -> np.ndarray:
        """The fractional timestep whose VE noise level is `sigma` (clamped to the table)."""
        log_s = np.log(np.asarray(sigma, dtype=np.float64))
        index = np.arange(self.num_train_timesteps, dtype=np.float64)
        return np.interp(log_s, self._log_ve, index)  # type: ignore[attr-defined]

    def timesteps(self, num_steps: int, spacing: str = "trailing") -> np.ndarray:
        """`num_steps` training timesteps to sample at, decreasing (noisiest first).

        - ``linspace``: evenly spaced from the last timestep to 0, rounded.
        - ``leading``: multiples of ``N // num_steps`` from 0 (never reaches the last timestep).
        - ``trailing``: counted back from the last timestep in strides of ``N / num_steps``;
          starts at pure noise, which is what an initial state of pure noise needs
          (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed").
        """
        n = self.num_train_timesteps
        _check_count(num_steps, "num_steps")
        if num_steps > n:
            raise ValueError(f"num_steps {num_steps} exceeds the {n} training timesteps; "
                             f"use at most {n} steps or the karras spacing")
        if spacing == "linspace":
            steps = np.linspace(0, n - 1, num_steps).round()[::-1]
        elif spacing == "leading":
            steps = (np.arange(num_steps) * (n // num_steps))[::-1]
        elif spacing == "trailing":
            steps = np.round(np.arange(n, 0, -n / num_steps)) - 1
        else:
            raise ValueError(f"unknown timestep spacing {spacing!r}; use one of "
                             f"{', '.join(SPACINGS)}")
        return np.asarray(steps, dtype=np.float64)

    def karras_timesteps(self, num_steps: int, rho: float = KARRAS_RHO) -> np.ndarray:
        """Fractional timesteps of Karras sigmas over this schedule's own noise range.

        The range is ``[max(0.002, sigma_min), sigma_max]``: sampling starts where the head's
        pure-noise initial state lives (EDM's 80 is the range of an EDM-trained model).
        """
        lo = max(KARRAS_SIGMA_MIN, self.sigma_min)
        return self.sigma_to_t(karras_sigmas(num_steps, lo, self.sigma_max, rho))

    def logsnr_timesteps(self, num_steps: int) -> np.ndarray:
        """Fractional timesteps evenly spaced in log-SNR over the schedule's whole range.

        DPM-Solver's recommended grid: its steps are exact in log-SNR, so even steps there
        spread the truncation error evenly.
        """
        _check_count(num_steps, "num_steps")
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return self.sigma_to_t(np.exp(np.linspace(hi, lo, num_steps)))

    def _check_t(self, t: Any) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(t > self.num_train_timesteps - 1):
            raise ValueError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}], "
                             f"got {t}")
        return t


def vp_from_ve(ve_sigma: Any) -> tuple[np.ndarray, np.ndarray]:
    """VP ``(alpha, sigma)`` with ``alpha**2 + sigma**2 = 1`` from a VE noise level ``s``."""
    s = np.asarray(ve_sigma, dtype=np.float64)
    alpha = 1.0 / np.sqrt(1.0 + s**2)
    return alpha, s * alpha


def schedule_from_config(value: Any, num_train_timesteps: int = 1000) -> NoiseSchedule:
    """A `NoiseSchedule` from a config value, so heads can take ``schedule:`` as an option.

    Accepts ``"linear"``, ``"cosine"``, ``"module.path:function"`` (a callable of u in [0, 1]
    returning alpha_bar), a callable, a mapping with exactly one of ``betas``,
    ``alphas_cumprod`` or ``sigmas`` (a table), or a `NoiseSchedule`.
    """
    if isinstance(value, NoiseSchedule):
        return value
    if value == "linear":
        return NoiseSchedule.linear(num_train_timesteps)
    if value == "cosine":
        return NoiseSchedule.cosine(num_train_timesteps)
    if isinstance(value, str) or callable(value):
        function = _import_callable(value) if isinstance(value, str) else value
        return NoiseSchedule.from_callable(function, num_train_timesteps)
    if isinstance(value, Mapping):
        builders = {"betas": NoiseSchedule.from_betas,
                    "alphas_cumprod": NoiseSchedule.from_alphas_cumprod,
                    "sigmas": NoiseSchedule.from_sigmas}
        keys = [k for k in value if k in builders]
        if len(keys) == 1 and len(value) == 1:
            return builders[keys[0]](value[keys[0]])
    raise ValueError(f"cannot build a noise schedule from {value!r}; write `linear`, `cosine`, "
                     "`module:function`, or a table {betas: [...]}, {alphas_cumprod: [...]} "
                     "or {sigmas: [...]}")


# -- the masking schedule ----------------------------------------------------------------------

#: Built-in masking schedules (`masking_schedule` also takes a callable or a table).
MASKING_SCHEDULES = ("linear", "cosine", "log-linear")


@dataclass(frozen=True)
class MaskingSchedule:
    """``alpha(t)``: the probability a token is unmasked at time t (1 at t=0, 0 at t=1)."""

    name: str
    function: Callable[[np.ndarray], np.ndarray]

    def alpha(self, t: Any) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
            raise ValueError(f"masking times must lie in [0, 1], got {t}")
        return np.clip(np.asarray(self.function(t), dtype=np.float64), 0.0, 1.0)

    def mask_rate(self, t: Any) -> np.ndarray:
        """``1 - alpha(t)``: the expected fraction of masked tokens at time t."""
        return 1.0 - self.alpha(t)


def _linear_alpha(t: np.ndarray) -> np.ndarray:
    return 1.0 - t


def _cosine_alpha(t: np.ndarray) -> np.ndarray:
    # MaskGIT's cosine: the mask ratio after a fraction r = 1 - t of the way is cos(pi r / 2), so
    # alpha = 1 - sin(pi t / 2): few tokens are revealed first (the hardest choices), many last.
    return 1.0 - np.sin(math.pi / 2 * t)


#: MDLM's log-linear schedule keeps alpha(1) = eps above 0 so its log-weight stays finite.
LOG_LINEAR_EPS = 1e-3


def _log_linear_alpha(t: np.ndarray) -> np.ndarray:
    # MDLM (Sahoo et al. 2024): total noise sigma(t) = -log(1 - (1 - eps) t), alpha = exp(-sigma).
    return np.exp(np.log1p(-(1.0 - LOG_LINEAR_EPS) * t))


_MASKING = {"linear": _linear_alpha, "cosine": _cosine_alpha, "log-linear": _log_linear_alpha}


def masking_schedule(value: Any = "linear") -> MaskingSchedule:
    """A `MaskingSchedule` from a name, ``"module.path:function"``, a callable, or a table.

    A table is a list of alpha values on an even grid of t from 0 to 1 (first 1, last 0,
    decreasing); it is interpolated linearly.
    """
    if isinstance(value, MaskingSchedule):
        return value
    if isinstance(value, str) and value in _MASKING:
        return MaskingSchedule(value, _MASKING[value])
    if isinstance(value, str) and ":" not in value:
        raise ValueError(f"unknown masking schedule {value!r}; use one of "
                         f"{', '.join(MASKING_SCHEDULES)}, `module:function`, or a table")
    if isinstance(value, str) or callable(value):
        function = _import_callable(value) if isinstance(value, str) else value
        return MaskingSchedule(getattr(function, "__name__", "custom"), function)
    if isinstance(value, (list, tuple, np.ndarray)):
        table = np.asarray(value, dtype=np.float64)
        if table.ndim != 1 or table.size < 2 or np.any(np.diff(table) > 0) \
                or not np.isclose(table[0], 1) or not np.isclose(table[-1], 0):
            raise ValueError("a masking table must be a decreasing list of alpha values from "
                             "1 (t=0) to 0 (t=1)")
        grid = np.linspace(0.0, 1.0, table.size)
        return MaskingSchedule("table", lambda t: np.interp(t, grid, table))
    raise ValueError(f"unknown masking schedule {value!r}; use one of "
                     f"{', '.join(MASKING_SCHEDULES)}, `module:function`, or a table")


# -- helpers -----------------------------------------------------------------------------------


#: Set to 1 to let config files and model directories name Python code (`module:function`).
TRUST_CODE_ENV = "AIOS_TRUST_CODE"
_trusted = False


class UntrustedCodeError(AiosError, ValueError):
    """A config value or model file names Python code and code is not trusted."""

    exit_code = 2


def trust_code(enabled: bool = True) -> None:
    """Let `module:function` values import and call code (the CLI's ``--trust-code``)."""
    global _trusted
    _trusted = enabled


def code_is_trusted() -> bool:
    return _trusted or os.environ.get(TRUST_CODE_ENV, "").strip() == "1"


def _import_callable(path: str) -> Callable[..., Any]:
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"unknown schedule {path!r}; name a built-in schedule or a callable as "
                         "`module.path:function`")
    if not code_is_trusted():
        raise UntrustedCodeError(
            f"the schedule {path!r} names Python code (module:function), which a config file or "
            "model directory may not run by default; use a built-in schedule or a table, or "
            f"pass --trust-code (or set {TRUST_CODE_ENV}=1) if you trust where it came from")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import the schedule callable {path!r}: {exc}") from exc
    if not callable(function):
        raise ValueError(f"{path!r} is not callable")
    return function


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
