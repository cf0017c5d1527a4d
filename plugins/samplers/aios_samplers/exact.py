"""Problems whose perfect model is known in closed form, to prove samplers exact.

A sampler can only be judged against the truth if the model is not the thing being tested.
These targets *are* their own perfect models:

- `GaussianMixture`: data from a mixture of Gaussians. Noised with ``x_t = alpha x_0 + sigma
  noise`` it stays a mixture, so the posterior mean E[x_0 | x_t] (hence the optimal epsilon, x0
  and v predictions) is analytic. In 1-D the probability-flow ODE is a monotone transport, so its
  exact end point is the quantile map ``F_0^{-1}(F_t(x))``: a deterministic sampler's error can
  be measured per sample, free of sampling noise.
- `MarkovChain`: token sequences from a Markov chain with an absorbing end-of-sequence token.
  The exact conditional of each masked position given the visible ones follows from
  forward-backward, which is exactly what a perfect masked-diffusion model outputs.

Both act as heads for the samplers (``initial_state`` / ``denoise``), batched with NumPy, and are
used by the pack's tests and by ``benchmarks/samplers.py``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aios.protocols import GaussianState, MaskedState
from aios.schedules import NoiseSchedule

# -- Gaussian mixture --------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function, |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """``sum_k weights[k] N(means[k], covariances[k])`` in d dimensions, with its exact denoiser.

    As a head it generates ``batch`` samples of shape ``(batch, d)`` under ``schedule``, and
    predicts ``prediction`` (epsilon, x0 or v) exactly.
    """

    weights: np.ndarray
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule.linear)
    prediction: str = "epsilon"
    batch: int = 1000
    calls: list[int] = field(default_factory=lambda: [0])  # model evaluations so far

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=np.float64)
        means = np.asarray(self.means, dtype=np.float64)
        covariances = np.asarray(self.covariances, dtype=np.float64)
        if means.ndim == 1:  # 1-D: scalars per component
            means = means[:, None]
        if covariances.ndim == 1:  # 1-D: variances per component
            covariances = covariances[:, None, None]
        if not np.isclose(weights.sum(), 1) or weights.shape[0] != means.shape[0]:
            raise ValueError("weights must sum to 1, one per component")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)
        object.__setattr__(self, "_quantiles", {})

    @classmethod
    def one_d(cls, **options: object) -> GaussianMixture:
        """Three well-separated, unequal components on the line."""
        return cls([0.2, 0.5, 0.3], [-2.0, 0.5, 3.0], np.array([0.3, 0.5, 0.4]) ** 2,
                   **options)  # type: ignore[arg-type]

    @classmethod
    def two_d(cls, **options: object) -> GaussianMixture:
        """Three components in the plane, two of them correlated."""
        covariances = [[[0.30, 0.12], [0.12, 0.20]], [[0.15, 0.0], [0.0, 0.40]],
                       [[0.25, -0.10], [-0.10, 0.20]]]
        return cls([0.25, 0.45, 0.30], [[-2.5, 0.0], [1.5, 2.0], [2.0, -2.0]], covariances,
                   **options)  # type: ignore[arg-type]

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` exact samples, shape (n, d)."""
        components = rng.choice(len(self.weights), size=n, p=self.weights)
        factors = np.linalg.cholesky(self.covariances)
        noise = rng.standard_normal((n, self.dim))
        return self.means[components] + np.einsum("nij,nj->ni", factors[components], noise)

    def noised(self, x0: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        alpha, sigma = self.schedule.alpha_sigma(t)
        return alpha * x0 + sigma * rng.standard_normal(x0.shape)

    def posterior_mean(self, x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
        """E[x_0 | x_t = x] for x of shape (n, d)."""
        eye = np.eye(self.dim)
        marginal = alpha**2 * self.covariances + sigma**2 * eye  # (K, d, d)
        inverse = np.linalg.inv(marginal)
        diff = x[:, None, :] - alpha * self.means[None]  # (n, K, d)
        solved = np.einsum("kij,nkj->nki", inverse, diff)
        _, logdet = np.linalg.slogdet(marginal)
        log_resp = (np.log(self.weights) - 0.5 * logdet)[None] \
            - 0.5 * np.einsum("nki,nki->nk", diff, solved)
        log_resp -= log_resp.max(axis=1, keepdims=True)
        resp = np.exp(log_resp)
        resp /= resp.sum(axis=1, keepdims=True)
        means = self.means[None] + alpha * np.einsum("kij,nkj->nki", self.covariances, solved)
        return np.einsum("nk,nki->ni", resp, means)

    def classify(self, x: np.ndarray) -> np.ndarray:
        """The most likely clean component of each sample."""
        diff = x[:, None, :] - self.means[None]
        solved = np.einsum("kij,nkj->nki", np.linalg.inv(self.covariances), diff)
        _, logdet = np.linalg.slogdet(self.covariances)
        log_p = np.log(self.weights)[None] - 0.5 * logdet[None] \
            - 0.5 * np.einsum("nki,nki->nk", diff, solved)
        return log_p.argmax(axis=1)

    # 1-D exact distribution functions

    def cdf(self, x: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """The CDF of the 1-D mixture noised to (alpha, sigma)."""
        self._need_1d()
        means = alpha * self.means[:, 0]
        stds = np.sqrt(alpha**2 * self.covariances[:, 0, 0] + sigma**2)
        z = (np.asarray(x, dtype=np.float64)[..., None] - means) / (stds * math.sqrt(2))
        return (self.weights * 0.5 * (1 + _erf(z))).sum(axis=-1)

    def quantile(self, u: np.ndarray, alpha: float = 1.0, sigma: float = 0.0) -> np.ndarray:
        """The inverse of `cdf` (bisection, to 1e-12)."""
        self._need_1d()
        u = np.asarray(u, dtype=np.float64)
        spread = float(np.sqrt(alpha**2 * self.covariances.max() + sigma**2))
        lo = np.full(u.shape, alpha * self.means.min() - 12 * spread)
        hi = np.full(u.shape, alpha * self.means.max() + 12 * spread)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid, alpha, sigma) < u
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def ode_endpoint(self, x: np.ndarray, t: float) -> np.ndarray:
        """Where the exact probability-flow ODE takes 1-D points `x` at timestep `t`."""
        alpha, sigma = self.schedule.alpha_sigma(t)
        return self.quantile(self.cdf(x, float(alpha), float(sigma)))

    def wasserstein(self, samples: np.ndarray) -> float:
        """W1 distance of 1-D samples to the exact mixture (sorted samples vs quantiles)."""
        self._need_1d()
        x = np.sort(np.asarray(samples, dtype=np.float64).reshape(-1))
        cache: dict[int, np.ndarray] = self._quantiles  # type: ignore[attr-defined]
        if x.size not in cache:
            cache[x.size] = self.quantile((np.arange(x.size) + 0.5) / x.size)
        return float(np.abs(x - cache[x.size]).mean())

    def _need_1d(self) -> None:
        if self.dim != 1:
            raise ValueError("this exact distribution function is implemented for 1-D mixtures")

    # the head interface

    def initial_state(self, rng: np.random.Generator) -> GaussianState:
        """Exact samples of the marginal at the schedule's last timestep (almost pure noise)."""
        last = self.schedule.num_train_timesteps - 1
        x = self.noised(self.sample(self.batch, rng), last, rng)
        return GaussianState(x, self.schedule, self.prediction)

    def denoise(self, state: GaussianState, t: float) -> np.ndarray:
        self.calls[0] += 1
        alpha, sigma = (float(v) for v in state.schedule.alpha_sigma(t))
        x0 = self.posterior_mean(state.x, alpha, sigma)
        eps = (state.x - alpha * x0) / sigma
        if state.prediction == "x0":
            return x0
        if state.prediction == "v":
            return alpha * eps - sigma * x0
        return eps


# -- Markov chain over tokens ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MarkovChain:
    """Sequences of `length` tokens from a Markov chain whose last token, EOS, is absorbing.

    Tokens are ``0 .. V-1`` with ``eos_id = V - 1``; the model's vocabulary adds the mask token
    ``mask_id = V``. As a head it starts ``batch`` fully masked rows, or rows with a `prompt`
    prefix, and `denoise` returns the exact log-probabilities of every position given the
    visible tokens. ``rows_evaluated`` counts sequence evaluations (rows passed to `denoise`).
    """

    initial: np.ndarray
    transition: np.ndarray
    length: int = 4
    batch: int = 1000
    prompt: Sequence[int] = ()
    calls: list[int] = field(default_factory=lambda: [0, 0])  # [denoise calls, rows evaluated]

    def __post_init__(self) -> None:
        initial = np.asarray(self.initial, dtype=np.float64)
        transition = np.asarray(self.transition, dtype=np.float64)
        v = initial.size
        if transition.shape != (v, v) or not np.allclose(transition.sum(axis=1), 1) \
                or not np.isclose(initial.sum(), 1):
            raise ValueError("initial must be a distribution over V tokens and transition a "
                             "V x V row-stochastic matrix")
        if transition[v - 1, v - 1] != 1:
            raise ValueError("the last token is EOS and must be absorbing")
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "transition", transition)

    @classmethod
    def small(cls, **options: object) -> MarkovChain:
        """Tokens a, b, c and EOS with strong correlations between neighbours."""
        initial = [0.5, 0.3, 0.2, 0.0]
        transition = [[0.60, 0.20, 0.05, 0.15],
                      [0.10, 0.20, 0.60, 0.10],
                      [0.30, 0.30, 0.10, 0.30],
                      [0.00, 0.00, 0.00, 1.00]]
        return cls(initial, transition, **options)  # type: ignore[arg-type]

    @property
    def vocab(self) -> int:
        """Size of the model's vocabulary, including the mask token."""
        return int(self.initial.size) + 1

    @property
    def eos_id(self) -> int:
        return int(self.initial.size) - 1

    @property
    def mask_id(self) -> int:
        return int(self.initial.size)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` exact sequences (conditioned on the prompt, if any), shape (n, length)."""
        out = np.empty((n, self.length), dtype=np.int64)
        state = self.initial_state(rng)
        tokens = np.resize(state.tokens[:1], (n, self.length))
        for i in range(self.length):
            log_p = self.log_probs(tokens)[:, i, :-1]
            p = np.exp(log_p)
            u = rng.random((n, 1))
            choice = (np.cumsum(p, axis=1) < u).sum(axis=1).clip(max=p.shape[1] - 1)
            tokens[:, i] = np.where(tokens[:, i] == self.mask_id, choice, tokens[:, i])
            out[:, i] = tokens[:, i]
        return out

    def probabilities(self) -> dict[tuple[int, ...], float]:
        """The exact distribution over complete sequences (prompt included), as a table."""
        v = self.initial.size
        grid = np.array(np.meshgrid(*[np.arange(v)] * self.length, indexing="ij"))
        seqs = grid.reshape(self.length, -1).T
        keep = np.all([seqs[:, i] == tok for i, tok in enumerate(self.prompt)], axis=0) \
            if self.prompt else np.ones(len(seqs), dtype=bool)
        seqs = seqs[keep]
        p = self.initial[seqs[:, 0]].copy()
        for i in range(1, self.length):
            p *= self.transition[seqs[:, i - 1], seqs[:, i]]
        p /= p.sum()
        return {tuple(int(t) for t in s): float(q) for s, q in zip(seqs, p, strict=True) if q > 0}

    def total_variation(self, samples: np.ndarray) -> float:
        """TV distance between the empirical distribution of `samples` and the exact one."""
        exact = self.probabilities()
        counts = Counter(map(tuple, np.asarray(samples).tolist()))
        n = len(samples)
        keys = set(exact) | set(counts)
        return 0.5 * sum(abs(counts.get(k, 0) / n - exact.get(k, 0.0)) for k in keys)

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """Exact log p(x_i = v | visible tokens) for every position, shape (B, L, vocab)."""
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            return self.log_probs(tokens[None])[0]
        b, length = tokens.shape
        v = self.initial.size
        visible = (tokens != self.mask_id).T  # position-major: each slice is contiguous
        evidence = np.where(visible[..., None], np.eye(v)[np.minimum(tokens.T, v - 1)], 1.0)
        forward = np.empty((length, b, v))
        f = self.initial * evidence[0]
        forward[0] = f / f.sum(axis=1, keepdims=True)
        for i in range(1, length):
            f = np.einsum("bi,ij->bj", forward[i - 1], self.transition) * evidence[i]
            forward[i] = f / f.sum(axis=1, keepdims=True)
        backward = np.ones((length, b, v))
        for i in range(length - 2, -1, -1):
            g = np.einsum("bj,ij->bi", evidence[i + 1] * backward[i + 1], self.transition)
            backward[i] = g / g.sum(axis=1, keepdims=True)
        post = (forward * backward).transpose(1, 0, 2)
        post /= post.sum(axis=2, keepdims=True)
        with np.errstate(divide="ignore"):
            log_post = np.log(post)
        mask_column = np.full((b, length, 1), -np.inf)
        return np.concatenate([log_post, mask_column], axis=2)

    # the head interface

    def initial_state(self, rng: np.random.Generator) -> MaskedState:
        tokens = np.full((self.batch, self.length), self.mask_id, dtype=np.int64)
        tokens[:, :len(self.prompt)] = np.asarray(self.prompt, dtype=np.int64)
        return MaskedState(tokens, mask_id=self.mask_id, eos_id=self.eos_id)

    def denoise(self, state: MaskedState, t: float) -> np.ndarray:
        self.calls[0] += 1
        self.calls[1] += len(state.tokens)
        return self.log_probs(state.tokens)
