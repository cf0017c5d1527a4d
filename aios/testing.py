"""Helpers for testing aios plugins, for pack authors as much as for aios itself.

The conformance kits (in the spirit of scikit-learn's ``check_estimator``) run the contract of
`aios.protocols` against a plugin author's factory: ``check_head``, ``check_sampler``,
``check_conditioner``, ``check_storage``, ``check_quantizer`` and ``check_embedder``. Each runs
every check it has, even after one fails, and raises one `ConformanceError` that names every
violation; when all hold it returns the names of the checks that ran. A plugin's test is one
line::

    def test_my_sampler_keeps_the_contract():
        aios.testing.check_sampler(MySampler)

The kits bring their own toy models (a peaked token model, an exact Gaussian denoiser for a
point mass) so that a sampler's result is *known*, not merely well-shaped.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import AiosError
from aios.protocols import (
    FAMILIES,
    HEAD_EXTRAS,
    Conditioner,
    Embedder,
    EngineContext,
    GaussianState,
    GenerationRequest,
    Guided,
    Head,
    MaskedState,
    MemoryStore,
    Quantizer,
    Sampler,
)
from aios.registry import PluginInfo, Registry, default_registry
from aios.schedules import NoiseSchedule

__all__ = [
    "ConformanceError",
    "check_conditioner",
    "check_embedder",
    "check_head",
    "check_quantizer",
    "check_sampler",
    "check_storage",
    "loaded_plugin",
]


def loaded_plugin(name: str, registry: Registry | None = None) -> PluginInfo:
    """Discover the installed plugins and return the one named `name` (its entry-point name).

    Fails with the recorded load error when the plugin was skipped, so a test shows *why*.
    """
    registry = registry or Registry.discover()
    if name in registry.plugins:
        return registry.plugins[name]
    reasons = [str(f) for f in registry.failures if f.plugin == name]
    raise AssertionError(
        f"plugin {name!r} did not load: " + ("; ".join(reasons) if reasons else
                                             "no entry point of that name in the group 'aios'")
    )


# -- the checking machinery ------------------------------------------------------------------


class ConformanceError(AssertionError):
    """One or more contract checks failed; `violations` maps each check's name to what broke."""

    def __init__(self, subject: str, violations: Mapping[str, str]) -> None:
        self.subject = subject
        self.violations = dict(violations)
        lines = "\n".join(f"  - {name}: {problem}" for name, problem in self.violations.items())
        super().__init__(f"{subject} breaks {len(self.violations)} contract check(s):\n{lines}")


class _Violation(Exception):
    """A check's expectation that did not hold (as opposed to the plugin raising)."""


def _expect(condition: Any, problem: str) -> None:
    if not condition:
        raise _Violation(problem)


class _Kit:
    """Runs named checks, collects every violation, and raises them together at the end."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.passed: list[str] = []
        self.violations: dict[str, str] = {}

    def check(self, name: str, run: Callable[[], Any]) -> Any:
        try:
            result = run()
        except KeyboardInterrupt:
            raise
        except _Violation as exc:
            self.violations[name] = str(exc)
        except BaseException as exc:  # noqa: BLE001 - a raising plugin is a violation too
            self.violations[name] = f"raised {type(exc).__name__}: {exc}"
        else:
            self.passed.append(name)
            return result
        return None

    def finish(self) -> list[str]:
        if self.violations:
            raise ConformanceError(self.subject, self.violations)
        return list(self.passed)


def _build(kit: _Kit, factory: Callable[..., Any], options: Mapping[str, Any] | None,
           protocol: type) -> Any:
    built = kit.check("builds", lambda: factory(**dict(options or {})))
    if built is None:
        kit.finish()  # nothing else can run
    kit.check("protocol", lambda: _expect(
        isinstance(built, protocol),
        f"{type(built).__name__} lacks members of aios.protocols.{protocol.__name__}: "
        + ", ".join(_missing(built, protocol))))
    return built


def _missing(obj: Any, protocol: type) -> list[str]:
    members = [m for m in dir(protocol) if not m.startswith("_")]
    members += list(getattr(protocol, "__annotations__", {}))
    return sorted({m for m in members if not hasattr(obj, m)})


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__


# -- toy models with known answers (the kits' fixtures) -----------------------------------------

_VOCAB, _EOS, _MASK = 12, 10, 11
_ROWS, _LENGTH, _PROMPT = 3, 16, 3


def _target(rows: np.ndarray, shift: int = 0) -> np.ndarray:
    """The tokens the toy discrete model is sure about: a fixed pattern per row, never EOS."""
    return (rows[:, None] * 7 + np.arange(_LENGTH)[None, :] * 3 + shift) % _EOS


def _peaked(tokens: np.ndarray) -> np.ndarray:
    """Log-probabilities certain of `tokens`; the mask token scores highest of all, so a sampler
    that does not exclude it (as the contract requires) shows."""
    logits = np.zeros((*tokens.shape, _VOCAB))
    np.put_along_axis(logits, tokens[..., None], 20.0, axis=-1)
    logits[..., _MASK] = 22.0
    return logits


def _masked_start(eos: bool = False) -> MaskedState:
    tokens = np.full((_ROWS, _LENGTH), _MASK, dtype=np.int64)
    tokens[:, :_PROMPT] = _target(np.arange(_ROWS))[:, :_PROMPT]
    return MaskedState(tokens, _MASK, _EOS if eos else None)


def _discrete_denoiser(shift: int = 0, eos_at: int | None = None,
                       guided: tuple[int, float] | None = None) -> Callable[[Any, Any], Any]:
    def denoise(state: MaskedState, t: Any) -> Any:
        tokens = np.asarray(state.tokens)
        rows = np.arange(_ROWS) if state.rows is None else np.asarray(state.rows)
        _expect(tokens.shape == (len(rows), _LENGTH),
                f"denoise got tokens {tokens.shape} for rows {rows.tolist()}: `rows` must name "
                "the given rows of the full batch")
        target = _target(rows, shift)
        if eos_at is not None:
            target[rows == 0, eos_at] = _EOS
        if guided is not None:
            other, scale = guided
            return Guided(_peaked(target), _peaked(_target(rows, other)), scale)
        return _peaked(target)

    return denoise


_SHAPE = (2, 6)


def _x0() -> np.ndarray:
    return np.linspace(-0.9, 0.9, int(np.prod(_SHAPE))).reshape(_SHAPE)


def _gaussian_denoiser(prediction: str, x0: np.ndarray, schedule: NoiseSchedule,
                       guided: tuple[np.ndarray, float] | None = None) -> Callable[[Any, Any], Any]:
    """The exact denoiser of a point mass at `x0`: every sampler must end at `x0`."""

    def exact(x: np.ndarray, t: Any, target: np.ndarray) -> np.ndarray:
        alpha, sigma = (np.asarray(v, dtype=np.float64) for v in schedule.alpha_sigma(t))
        eps = (x - alpha * target) / sigma
        return {"epsilon": eps, "x0": np.broadcast_to(target, x.shape).copy(),
                "v": alpha * eps - sigma * target}[prediction]

    def denoise(state: GaussianState, t: Any) -> Any:
        x = np.asarray(state.x, dtype=np.float64)
        _expect(x.shape == _SHAPE, f"denoise got x of shape {x.shape}, expected {_SHAPE}")
        if guided is not None:
            other, scale = guided
            return Guided(exact(x, t, x0), exact(x, t, other), scale)
        return exact(x, t, x0)

    return denoise


# -- check_sampler ------------------------------------------------------------------------------


def check_sampler(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
                  num_steps: int = 8) -> list[str]:
    """Check a sampler factory against `aios.protocols.Sampler` with the kit's toy models.

    Discrete: prompt positions kept, every masked position filled with the model's token, the
    mask token never sampled, EOS ends a row, ``rows`` names the rows of a subset, guidance
    combines the branches. Continuous: the exact denoiser of a point mass is followed to it for
    each prediction type (epsilon, x0, v), guidance likewise. Both: the callback sees every
    step, a seed reproduces the result, the input state is left untouched, zero steps refused.
    """
    kit = _Kit(f"sampler {_name(factory)}")
    sampler = _build(kit, factory, options, Sampler)
    family = getattr(sampler, "family", None)
    kit.check("family", lambda: _expect(family in FAMILIES,
                                        f"family is {family!r}, not one of {FAMILIES}"))
    if family == "discrete":
        _discrete_sampler_checks(kit, sampler, num_steps)
    elif family == "continuous":
        _continuous_sampler_checks(kit, sampler, num_steps)
    return kit.finish()


def _run(sampler: Any, denoise: Callable[..., Any], state: Any, num_steps: int, seed: int = 0,
         callback: Any = None) -> Any:
    return sampler.sample(denoise, state, num_steps=num_steps, rng=np.random.default_rng(seed),
                          callback=callback)


def _discrete_sampler_checks(kit: _Kit, sampler: Any, num_steps: int) -> None:
    def tokens_of(state: Any) -> np.ndarray:
        _expect(isinstance(state, MaskedState), f"sample returned {type(state).__name__}, "
                                                "not the MaskedState it was given")
        return np.asarray(state.tokens)

    def fills_with_the_model_tokens() -> None:
        start = _masked_start()
        out = tokens_of(_run(sampler, _discrete_denoiser(), start, num_steps))
        _expect(out.shape == start.tokens.shape, f"tokens shape {out.shape} != "
                                                 f"{start.tokens.shape}")
        _expect(not (out == _MASK).any(), "masked positions are left (or the mask token was "
                                          "sampled: it must never be)")
        _expect(np.array_equal(out[:, :_PROMPT], start.tokens[:, :_PROMPT]),
                "prompt (unmasked) positions were changed")
        wrong = int((out != _target(np.arange(_ROWS))).sum())
        _expect(wrong == 0, f"{wrong} positions differ from the tokens the model is certain of")

    def eos_ends_a_row() -> None:
        out = tokens_of(_run(sampler, _discrete_denoiser(eos_at=8), _masked_start(eos=True),
                             num_steps))
        _expect((out[0, 8:] == _EOS).all(), f"after EOS at position 8 row 0 reads "
                                             f"{out[0, 8:].tolist()}; every later generated "
                                             "position must be EOS")
        _expect(not (out[1:] == _EOS).any(), "EOS appeared in rows whose model never says it")

    def guidance() -> None:
        for scale, expected_shift in ((1.0, 0), (0.0, 5)):
            out = tokens_of(_run(sampler, _discrete_denoiser(guided=(5, scale)), _masked_start(),
                                 num_steps))
            expected = _target(np.arange(_ROWS), expected_shift)[:, _PROMPT:]
            _expect(np.array_equal(out[:, _PROMPT:], expected),
                    f"with Guided(..., scale={scale}) the result is not the "
                    f"{'conditional' if scale else 'unconditional'} branch's tokens")

    kit.check("fills_masked_positions", fills_with_the_model_tokens)
    kit.check("eos_ends_row", eos_ends_a_row)
    kit.check("rows_subset", lambda: _run(sampler, _discrete_denoiser(),
                                          _masked_start(eos=True), num_steps))
    kit.check("guidance", guidance)
    _common_sampler_checks(kit, sampler, num_steps, _masked_start, _discrete_denoiser(),
                           lambda s: np.asarray(s.tokens))


def _continuous_sampler_checks(kit: _Kit, sampler: Any, num_steps: int) -> None:
    schedule = NoiseSchedule.linear()
    x0 = _x0()

    def start(prediction: str = "epsilon") -> GaussianState:
        noise = np.random.default_rng(7).standard_normal(_SHAPE)
        return GaussianState(noise, schedule, prediction)

    def x_of(state: Any) -> np.ndarray:
        _expect(isinstance(state, GaussianState), f"sample returned {type(state).__name__}, "
                                                  "not the GaussianState it was given")
        x = np.asarray(state.x)
        _expect(x.shape == _SHAPE, f"x has shape {x.shape}, expected {_SHAPE}")
        return x

    def reaches(prediction: str) -> Callable[[], None]:
        def run() -> None:
            out = x_of(_run(sampler, _gaussian_denoiser(prediction, x0, schedule),
                            start(prediction), num_steps))
            error = float(np.abs(out - x0).max())
            _expect(error < 0.1, f"with an exact {prediction} model of a point mass the result "
                                 f"is {error:.3g} away from it (at most 0.1 expected)")
        return run

    def guidance() -> None:
        other = -x0
        for scale, expected in ((1.0, x0), (0.0, other)):
            out = x_of(_run(sampler, _gaussian_denoiser("epsilon", x0, schedule,
                                                        guided=(other, scale)),
                            start(), num_steps))
            error = float(np.abs(out - expected).max())
            _expect(error < 0.1, f"with Guided(..., scale={scale}) the result is {error:.3g} "
                                 f"from the {'conditional' if scale else 'unconditional'} "
                                 "branch's target")

    for prediction in ("epsilon", "x0", "v"):
        kit.check(f"reaches_data_{prediction}", reaches(prediction))
    kit.check("guidance", guidance)
    _common_sampler_checks(kit, sampler, num_steps, start,
                           _gaussian_denoiser("epsilon", x0, schedule),
                           lambda s: np.asarray(s.x))


def _common_sampler_checks(kit: _Kit, sampler: Any, num_steps: int,
                           start: Callable[[], Any], denoise: Callable[..., Any],
                           values: Callable[[Any], np.ndarray]) -> None:
    def callback_every_step() -> None:
        seen: list[tuple[int, int]] = []
        _run(sampler, denoise, start(), num_steps,
             callback=lambda step, total, state: seen.append((step, total)))
        if getattr(sampler, "steps_per_block", False):
            # `num_steps` bounds each block's calls: the callback counts steps 0, 1, ... up to
            # the bound over the whole generation it reports, and may end early when done
            total = seen[0][1] if seen else 0
            _expect(bool(seen) and total >= num_steps
                    and seen == [(i, total) for i in range(len(seen))],
                    f"callback saw (step, num_steps) {seen}, expected steps 0, 1, ... with "
                    f"one total, at least {num_steps}")
            return
        _expect(seen == [(i, num_steps) for i in range(num_steps)],
                f"callback saw (step, num_steps) {seen}, expected one call per step "
                f"0..{num_steps - 1}")

    def seed_reproduces() -> None:
        first = values(_run(sampler, denoise, start(), num_steps, seed=3))
        again = values(_run(sampler, denoise, start(), num_steps, seed=3))
        _expect(np.array_equal(first, again), "the same rng seed gave different results")

    def input_untouched() -> None:
        state = start()
        before = values(state).copy()
        _run(sampler, denoise, state, num_steps)
        _expect(np.array_equal(values(state), before),
                "sample changed the state it was given in place; return a new one "
                "(dataclasses.replace)")

    def zero_steps_refused() -> None:
        try:
            _run(sampler, denoise, start(), 0)
        except (ValueError, AiosError):
            return
        raise _Violation("num_steps=0 was accepted; raise ValueError")

    kit.check("callback_every_step", callback_every_step)
    kit.check("seed_reproduces", seed_reproduces)
    kit.check("input_state_untouched", input_untouched)
    kit.check("refuses_zero_steps", zero_steps_refused)


# -- check_head ---------------------------------------------------------------------------------


def check_head(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
               prompt: Any = "Once upon a time", request_options: Mapping[str, Any] | None = None,
               sampler: Any = None, num_steps: int = 4) -> list[str]:
    """Check a head factory against `aios.protocols.Head` (and the extras it offers).

    The starting state has the family's type and shape, a seed reproduces it (and another seed
    changes noise), ``denoise`` answers in the documented shape (a subset of rows like the full
    batch's rows; with guidance either a plain prediction or `Guided` branches of that shape),
    a whole generation under `sampler` (default: the kit's minimal sampler of the family)
    decodes reproducibly, and each optional extra the head has is complete.
    """
    kit = _Kit(f"head {_name(factory)}")
    head = _build(kit, factory, options, Head)
    family = getattr(head, "family", None)
    kit.check("family", lambda: _expect(family in FAMILIES,
                                        f"family is {family!r}, not one of {FAMILIES}"))
    kit.check("modality", lambda: _expect(
        isinstance(getattr(head, "modality", None), str)
        and getattr(factory, "modality", head.modality) == head.modality,
        "modality must be a str, declared on the factory as on the object"))

    def request(seed: int = 0, guidance_scale: float = 1.0) -> GenerationRequest:
        return GenerationRequest(prompt=prompt, modality=str(getattr(head, "modality", "")),
                                 num_steps=num_steps, guidance_scale=guidance_scale, seed=seed,
                                 options=dict(request_options or {}))

    def start(seed: int = 0) -> Any:
        return head.initial_state(request(seed), np.random.default_rng(seed))

    def values(state: Any) -> np.ndarray:
        return np.asarray(state.tokens if family == "discrete" else state.x)

    def initial_state() -> None:
        state = start()
        if family == "discrete":
            _expect(isinstance(state, MaskedState), f"initial_state returned "
                                                    f"{type(state).__name__}, not a MaskedState")
            tokens = np.asarray(state.tokens)
            _expect(tokens.ndim in (1, 2) and np.issubdtype(tokens.dtype, np.integer),
                    f"tokens must be an int array (batch, length), got {tokens.dtype} "
                    f"{tokens.shape}")
            _expect((tokens == state.mask_id).any(), "no position holds mask_id: nothing to "
                                                     "generate")
        else:
            _expect(isinstance(state, GaussianState), f"initial_state returned "
                                                      f"{type(state).__name__}, not a "
                                                      "GaussianState")
            _expect(np.isfinite(np.asarray(state.x)).all(), "the initial noise is not finite")
            _expect(isinstance(state.schedule, NoiseSchedule), "schedule is not a NoiseSchedule")

    def seeds() -> None:
        _expect(np.array_equal(values(start(0)), values(start(0))),
                "the same seed gave different initial states")
        if family == "continuous":
            _expect(not np.array_equal(values(start(0)), values(start(1))),
                    "different seeds gave the same initial noise")

    def prediction(state: Any, req: GenerationRequest) -> Any:
        t = 0.5 if family == "discrete" else (state.schedule.num_train_timesteps - 1) / 2 + 0.25
        return head.denoise(state, t, req)

    def check_shape(out: Any, state: Any, what: str) -> np.ndarray:
        out = np.asarray(out)
        if family == "discrete":
            tokens = np.atleast_2d(np.asarray(state.tokens))
            _expect(out.ndim == 3 and out.shape[:2] == tokens.shape,
                    f"{what}: logits of shape {out.shape}, expected {tokens.shape} + (vocab,)")
        else:
            _expect(out.shape == np.asarray(state.x).shape,
                    f"{what}: prediction of shape {out.shape}, expected {np.shape(state.x)}")
        _expect(not np.isnan(out).any(), f"{what}: the prediction holds NaN")
        return out

    def denoise_shape() -> None:
        out = prediction(start(), request())
        _expect(not isinstance(out, Guided), "guidance_scale=1 must not need Guided")
        check_shape(out, start(), "denoise")

    def rows_subset() -> None:
        state = start()
        tokens = np.atleast_2d(np.asarray(state.tokens))
        full = check_shape(prediction(dataclasses.replace(state, tokens=tokens), request()),
                           state, "denoise")
        last = np.array([tokens.shape[0] - 1])
        part = dataclasses.replace(state, tokens=tokens[last], rows=last)
        out = check_shape(prediction(part, request()), part, "denoise on a subset of rows")
        _expect(np.allclose(out, full[last], atol=1e-4, equal_nan=True),
                "denoise of a subset of rows differs from the same rows of the full batch")

    def guidance() -> None:
        req = request(guidance_scale=3.0)
        state = head.initial_state(req, np.random.default_rng(0))
        out = prediction(state, req)
        branches = (out.conditional, out.unconditional) if isinstance(out, Guided) else (out,)
        for branch in branches:
            check_shape(branch, state, "guided denoise")
        if isinstance(out, Guided):
            _expect(out.scale == 3.0, f"Guided.scale is {out.scale}, the request asked 3.0")

    def generate(seed: int) -> Any:
        req = request(seed)
        rng = np.random.default_rng(seed)
        state = head.initial_state(req, rng)
        runner = sampler if sampler is not None else _KIT_SAMPLERS[family]()
        state = runner.sample(lambda s, t: head.denoise(s, t, req), state,
                              num_steps=num_steps, rng=rng)
        return head.decode(state, req)

    def decodes_reproducibly() -> None:
        first, again = generate(0), generate(0)
        _expect(first is not None, "decode returned None")
        _expect(_same(first, again), "the same seed gave different outputs")

    def extras() -> None:
        for extra in HEAD_EXTRAS:
            members = _missing(object(), extra)
            present = [m for m in members if hasattr(head, m)]
            if present and len(present) < len(members):
                raise _Violation(f"has {', '.join(present)} but not "
                                 f"{', '.join(sorted(set(members) - set(present)))} of "
                                 f"aios.protocols.{extra.__name__}")
        if hasattr(head, "parameter_counts"):
            counts = head.parameter_counts()
            _expect(isinstance(counts, Mapping) and {"backbone", "head"} <= set(counts)
                    and all(isinstance(counts[k], int) and counts[k] >= 0
                            for k in ("backbone", "head")),
                    f"parameter_counts() returned {counts!r}, expected "
                    "{'backbone': int, 'head': int}")
        options = getattr(head, "generation_options", None)
        _expect(options is None or (isinstance(options, Mapping) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in options.items())),
                f"generation_options is {options!r}, expected a mapping of option name to "
                "what it does")
        row_times = getattr(head, "row_times", None)
        _expect(row_times is None or isinstance(row_times, bool),
                f"row_times is {row_times!r}, expected True or False")
        explain = getattr(head, "last_explain", None)
        _expect(explain is None or isinstance(explain, Mapping),
                f"last_explain is {type(explain).__name__}, not a mapping or None")

    kit.check("initial_state", initial_state)
    kit.check("seed_reproduces", seeds)
    kit.check("denoise_shape", denoise_shape)
    if family == "discrete":
        kit.check("rows_subset", rows_subset)
    kit.check("guidance", guidance)
    kit.check("decodes_reproducibly", decodes_reproducibly)
    kit.check("extras", extras)
    return kit.finish()


def _same(first: Any, again: Any) -> bool:
    """Equality for outputs of any kind: text, arrays, dataclasses of them (e.g. audio)."""
    if dataclasses.is_dataclass(first) and type(first) is type(again):
        return all(_same(getattr(first, f.name), getattr(again, f.name))
                   for f in dataclasses.fields(first))
    if isinstance(first, (list, tuple)):
        return (isinstance(again, (list, tuple)) and len(first) == len(again)
                and all(_same(a, b) for a, b in zip(first, again, strict=True)))
    if isinstance(first, np.ndarray):
        return np.array_equal(first, np.asarray(again))
    return bool(first == again)


class _LeftToRightSampler:
    """The discrete kit sampler: fills the most probable non-mask token, left to right."""

    family = "discrete"

    def sample(self, denoise: Callable[..., Any], state: MaskedState, *, num_steps: int,
               rng: np.random.Generator, callback: Any = None) -> MaskedState:
        tokens = np.atleast_2d(np.array(state.tokens))
        for step in range(num_steps):
            masked = np.argwhere(tokens == state.mask_id)
            take = masked[: -(-len(masked) // (num_steps - step))]
            if len(take):
                logits = _combine(denoise(dataclasses.replace(state, tokens=tokens),
                                          1.0 - step / num_steps))
                logits[..., state.mask_id] = -np.inf
                tokens[take[:, 0], take[:, 1]] = logits.argmax(-1)[take[:, 0], take[:, 1]]
        return dataclasses.replace(state, tokens=tokens.reshape(np.shape(state.tokens)))


class _DDIMSampler:
    """The continuous kit sampler: deterministic DDIM over the head's schedule."""

    family = "continuous"

    def sample(self, denoise: Callable[..., Any], state: GaussianState, *, num_steps: int,
               rng: np.random.Generator, callback: Any = None) -> GaussianState:
        schedule, x = state.schedule, np.asarray(state.x, dtype=np.float64)
        steps = schedule.timesteps(num_steps)
        for index, t in enumerate(steps):
            alpha, sigma = (float(v) for v in schedule.alpha_sigma(t))
            out = np.asarray(_combine(denoise(dataclasses.replace(state, x=x), t)))
            if state.prediction == "epsilon":
                x0, eps = (x - sigma * out) / alpha, out
            elif state.prediction == "x0":
                x0, eps = out, (x - alpha * out) / sigma
            else:
                x0, eps = alpha * x - sigma * out, sigma * x + alpha * out
            if index + 1 < len(steps):
                a_next, s_next = (float(v) for v in schedule.alpha_sigma(steps[index + 1]))
                x = a_next * x0 + s_next * eps
            else:
                x = x0
        return dataclasses.replace(state, x=x.astype(np.asarray(state.x).dtype))


def _combine(out: Any) -> np.ndarray:
    if isinstance(out, Guided):
        cond, uncond = np.asarray(out.conditional), np.asarray(out.unconditional)
        return uncond + out.scale * (cond - uncond)
    return np.array(out, dtype=np.float64)


_KIT_SAMPLERS: dict[str, Callable[[], Any]] = {"discrete": _LeftToRightSampler,
                                              "continuous": _DDIMSampler}


# -- check_conditioner --------------------------------------------------------------------------


def check_conditioner(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
                      request: GenerationRequest | None = None,
                      context: EngineContext | None = None) -> list[str]:
    """Check a conditioner factory against `aios.protocols.Conditioner`.

    ``condition`` returns a new `GenerationRequest` that keeps the prompt, modality, steps,
    seed and options and only adds to ``context`` / ``conditions``; the same input gives the
    same result. Pass `context` (with a store and embedder) for one that retrieves memory.
    """
    kit = _Kit(f"conditioner {_name(factory)}")
    conditioner = _build(kit, factory, options, Conditioner)
    request = request or GenerationRequest(prompt="Once upon a time", modality="text",
                                           num_steps=4, seed=0, context=("given",))
    context = context or EngineContext(head=_KitHead(), storage=None)
    kit.check("retrieves_memory", lambda: _expect(
        isinstance(getattr(conditioner, "retrieves_memory", False), bool),
        "retrieves_memory must be a bool class attribute"))

    def returns_a_grown_request() -> None:
        out = conditioner.condition(request, context)
        _expect(isinstance(out, GenerationRequest),
                f"condition returned {type(out).__name__}, not a GenerationRequest")
        for name in ("prompt", "modality", "num_steps", "guidance_scale", "seed", "options"):
            _expect(getattr(out, name) == getattr(request, name), f"condition changed {name}")
        _expect(out.context[:len(request.context)] == request.context
                and out.conditions[:len(request.conditions)] == request.conditions,
                "condition dropped context or conditions it was given; add to them")

    def deterministic() -> None:
        first = conditioner.condition(request, context)
        again = conditioner.condition(request, context)
        _expect(repr(first.context) == repr(again.context)
                and repr(first.conditions) == repr(again.conditions),
                "the same request gave different results")

    kit.check("returns_grown_request", returns_a_grown_request)
    kit.check("deterministic", deterministic)
    return kit.finish()


class _KitHead:
    """A stand-in head for a conditioner's context."""

    modality, family = "text", "discrete"


# -- check_storage ------------------------------------------------------------------------------

_DIM = 8


def check_storage(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
                  directory: str | Path | None = None) -> list[str]:
    """Check a storage factory against `aios.protocols.StorageFactory` / ``MemoryStore``.

    In a fresh directory (a temporary one unless `directory` is given): a read-only open where
    no store exists is refused and creates nothing; records round-trip (``get`` in the order
    asked, ``update``, ``delete``); search ranks exactly and applies filters before ranking;
    records persist across close and reopen; a read-only store refuses writes; ``compact``,
    ``stats``, ``export``, ``batches``, ``to_table`` answer as documented; bad input (a wrong
    dimension, k < 1) is an `AiosError`.
    """
    kit = _Kit(f"storage {_name(factory)}")
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="aios-check-storage-") as temporary:
            _storage_checks(kit, factory, dict(options or {}), Path(temporary))
    else:
        _storage_checks(kit, factory, dict(options or {}), Path(directory))
    return kit.finish()


def _storage_checks(kit: _Kit, factory: Callable[..., Any], options: dict[str, Any],
                    root: Path) -> None:
    path = root / "store"

    def open_store(read_only: bool = False, dim: int | None = None) -> Any:
        return factory(path=str(path), dim=dim, read_only=read_only, retention=None, **options)

    def missing_refused() -> None:
        try:
            store = open_store(read_only=True)
        except AiosError:
            _expect(not path.exists() or not any(path.iterdir()),
                    "a refused read-only open left files behind")
            return
        store.close()
        raise _Violation("a read-only open where no store exists succeeded; raise an "
                         "AiosError so `--memory DIR` can tell")

    kit.check("read_only_missing_refused", missing_refused)
    vectors = np.eye(_DIM, dtype=np.float32)[:6]
    contents = [f"record {i}" for i in range(6)]
    categories = ["a", "b"] * 3
    store = kit.check("creates", lambda: open_store(dim=_DIM))
    if store is None:
        return
    ids: list[str] = []
    try:
        kit.check("protocol", lambda: _expect(isinstance(store, MemoryStore),
                                              "lacks " + ", ".join(_missing(store, MemoryStore))))
        kit.check("path_and_dim", lambda: _expect(
            Path(store.path) == path and store.dim == _DIM,
            f"path {store.path!r} / dim {store.dim!r}, expected {path} / {_DIM}"))

        def add() -> None:
            ids.extend(store.add(embeddings=vectors, contents=contents, category=categories))
            _expect(len(ids) == 6 and len(set(ids)) == 6 and all(isinstance(i, str) for i in ids),
                    f"add returned {ids!r}, expected 6 distinct string ids")
            _expect(store.count() == 6, f"count() is {store.count()} after adding 6")

        kit.check("add", add)

        def get_in_order() -> None:
            table = store.get([ids[4], ids[1]])
            _expect(table.column("content").to_pylist() == [contents[4], contents[1]],
                    "get did not return the records in the order asked")

        def search_exact() -> None:
            result = store.search(vectors[2], k=3)
            nearest = list(result.ids)[:1]
            _expect(nearest == [ids[2]] and abs(float(result.scores[0]) - 1) < 1e-5,
                    f"the nearest record to record 2's own vector is {nearest} "
                    f"(score {list(np.asarray(result.scores))[:1]})")
            _expect(len(result.ids) == 3, f"k=3 returned {len(result.ids)} records")

        def filter_before_ranking() -> None:
            result = store.search(vectors[2], k=2, filter={"category": "b"})
            expected = {ids[1], ids[3], ids[5]}
            _expect(len(result.ids) == 2 and set(result.ids) <= expected,
                    f"a category 'b' filter returned {list(result.ids)}: the filter must be "
                    "applied before ranking, so k records of the category come back")

        def update_and_delete() -> None:
            store.update(ids=[ids[0]], embeddings=vectors[:1], contents=["changed"],
                         category=["a"])
            _expect(store.get(ids[0]).column("content").to_pylist() == ["changed"],
                    "update did not replace the record")
            _expect(store.delete([ids[5], "no-such-id"]) == 1,
                    "delete of one live and one unknown id did not return 1")
            _expect(store.count() == 5, f"count() is {store.count()} after deleting 1 of 6")

        def bad_input() -> None:
            for what, call in (("a vector of the wrong dimension",
                                lambda: store.add(embeddings=np.ones((1, _DIM + 1)))),
                               ("k=0", lambda: store.search(vectors[0], k=0))):
                try:
                    call()
                except AiosError:
                    continue
                raise _Violation(f"{what} was accepted (or not refused with an AiosError)")

        def reports() -> None:
            rows = sum(batch.num_rows for batch in store.batches())
            _expect(rows == store.count() == store.to_table().num_rows,
                    "batches(), to_table() and count() disagree")
            stats = store.stats()
            _expect({"path", "backend", "dim", "records"} <= set(stats),
                    f"stats() lacks {sorted({'path', 'backend', 'dim', 'records'} - set(stats))}")
            exported = store.export(str(root / "export.parquet"))
            _expect(exported == store.count() and (root / "export.parquet").is_file(),
                    f"export wrote {exported} records, the store holds {store.count()}")
            store.flush()
            result = store.compact()
            _expect(set(result) >= {"before", "after", "dropped"}
                    and result["after"] == store.count(),
                    f"compact() returned {result!r}; expected before/after/dropped")

        kit.check("get_in_order", get_in_order)
        kit.check("search_exact", search_exact)
        kit.check("filter_before_ranking", filter_before_ranking)
        kit.check("update_and_delete", update_and_delete)
        kit.check("bad_input_refused", bad_input)
        kit.check("stats_export_compact", reports)
    finally:
        store.close()

    def persists() -> None:
        with open_store() as reopened:
            _expect(reopened.count() == 5 and reopened.dim == _DIM,
                    f"after reopening: {reopened.count()} records of dim {reopened.dim}, "
                    f"expected 5 of {_DIM}")
            _expect(reopened.get(ids[0]).column("content").to_pylist() == ["changed"],
                    "an update was lost across reopening")

    def read_only_refuses_writes() -> None:
        reader = open_store(read_only=True)
        try:
            _expect(reader.count() == 5, "a read-only open sees a different count")
            try:
                reader.add(embeddings=vectors[:1])
            except AiosError:
                return
            raise _Violation("a read-only store accepted add()")
        finally:
            reader.close()

    kit.check("persists_across_reopen", persists)
    kit.check("read_only_refuses_writes", read_only_refuses_writes)


# -- check_quantizer ----------------------------------------------------------------------------


def check_quantizer(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
                    reference: Callable[..., Any] | None = None) -> list[str]:
    """Check a quantizer factory against `aios.protocols.Quantizer`.

    For 8 and 4 bits: the round trip is within half a quantization step, ``dequantize`` fills
    `out`, ``matmul`` equals ``x @ dequantize(W).T``, ``quantize_model`` keeps every name, and
    the packed bytes are identical to `reference`'s (default: the installed ``reference``
    quantizer, `aios.quant.ReferenceQuantizer`), since every backend shares the format.
    Non-finite weights are refused with an `AiosError`.
    """
    reference = reference or default_registry().get("quantizer", "reference").factory
    kit = _Kit(f"quantizer {_name(factory)}")
    base = dict(options or {})
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((16, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    for bits in (8, 4):
        settings = {**base, "bits": bits, "group_size": 32}
        quantizer = kit.check(f"builds_{bits}bit", lambda s=settings: factory(**s))
        if quantizer is None:
            continue
        if bits == 8:
            kit.check("protocol", lambda q=quantizer: _expect(
                isinstance(q, Quantizer), "lacks " + ", ".join(_missing(q, Quantizer))))

        def round_trip(q: Any = quantizer, b: int = bits) -> None:
            packed = q.quantize(weights, name="w")
            back = q.dequantize(packed)
            step = np.abs(weights).max() * 2 / (2**b - 1)
            error = float(np.abs(back - weights).max())
            _expect(back.shape == weights.shape and error <= step,
                    f"round-trip error {error:.3g} exceeds one quantization step {step:.3g}")
            out = np.empty_like(weights)
            _expect(q.dequantize(packed, out=out) is out and np.array_equal(out, back),
                    "dequantize(out=...) did not fill and return `out`")

        def matmul(q: Any = quantizer) -> None:
            packed = q.quantize(weights, name="w")
            out = np.empty((3, 16), np.float32)
            got = q.matmul(packed, x, out)
            expected = x @ q.dequantize(packed).T
            _expect(np.allclose(got, expected, rtol=1e-4, atol=1e-4),
                    f"matmul differs from x @ dequantize(W).T by "
                    f"{float(np.abs(got - expected).max()):.3g}")

        def same_bytes(q: Any = quantizer, s: dict[str, Any] = settings) -> None:
            twin = reference(**{k: v for k, v in s.items()
                                if k in ("bits", "group_size", "symmetric")})
            ours, theirs = q.quantize(weights, name="w"), twin.quantize(weights, name="w")
            _expect(np.array_equal(np.asarray(ours.data), np.asarray(theirs.data))
                    and np.array_equal(np.asarray(ours.scales), np.asarray(theirs.scales)),
                    "packed data or scales differ from the reference quantizer's: the format is "
                    "shared by every backend")

        def model(q: Any = quantizer) -> None:
            tensors = {"layer.weight": weights, "layer.bias": weights[0].copy()}
            out = q.quantize_model(tensors)
            _expect(set(out) == set(tensors), f"quantize_model returned keys {sorted(out)}")

        kit.check(f"round_trip_{bits}bit", round_trip)
        kit.check(f"matmul_{bits}bit", matmul)
        kit.check(f"reference_bytes_{bits}bit", same_bytes)
        kit.check(f"quantize_model_{bits}bit", model)

    def refuses_nan() -> None:
        bad = weights.copy()
        bad[0, 0] = np.nan
        try:
            factory(**{**base, "bits": 8, "group_size": 32}).quantize(bad, name="w")
        except AiosError:
            return
        raise _Violation("weights holding NaN were quantized; raise an AiosError naming them")

    kit.check("refuses_non_finite", refuses_nan)
    return kit.finish()


# -- check_embedder -----------------------------------------------------------------------------


def check_embedder(factory: Callable[..., Any], *, options: Mapping[str, Any] | None = None,
                   texts: Sequence[str] = ("a cat sat on the mat", "stock markets fell",
                                           "the cat is on the mat")) -> list[str]:
    """Check an embedder factory against `aios.protocols.Embedder`: ``(n, dim)`` float32 rows
    of unit length, the same text embedded alone or in a batch alike, repeatable, ``progress``
    accepted, no texts an empty ``(0, dim)`` array."""
    kit = _Kit(f"embedder {_name(factory)}")
    embedder = _build(kit, factory, options, Embedder)
    kit.check("name_and_dim", lambda: _expect(
        isinstance(embedder.name, str) and embedder.name
        and isinstance(embedder.dim, int) and embedder.dim > 0,
        f"name {getattr(embedder, 'name', None)!r} / dim {getattr(embedder, 'dim', None)!r}"))

    def shape_and_norm() -> None:
        out = embedder.embed(list(texts))
        _expect(isinstance(out, np.ndarray) and out.dtype == np.float32
                and out.shape == (len(texts), embedder.dim),
                f"embed returned {getattr(out, 'dtype', type(out))} {np.shape(out)}, expected "
                f"float32 ({len(texts)}, {embedder.dim})")
        norms = np.linalg.norm(out, axis=1)
        _expect(np.allclose(norms, 1, atol=1e-3), f"row norms {norms.round(4).tolist()} are "
                                                  "not 1 (rows must be L2-normalised)")

    def batch_independent() -> None:
        together = embedder.embed(list(texts), progress=False)
        alone = np.vstack([embedder.embed([t]) for t in texts])
        _expect(np.allclose(together, alone, atol=1e-4),
                "a text embeds differently alone and in a batch")

    def empty() -> None:
        out = embedder.embed([])
        _expect(np.shape(out) == (0, embedder.dim), f"embed([]) has shape {np.shape(out)}")

    kit.check("shape_and_unit_rows", shape_and_norm)
    kit.check("batch_independent", batch_independent)
    kit.check("empty_input", empty)
    return kit.finish()
