"""block-threshold against a model whose logits encode a known target and chosen confidences:
which positions each step reveals, block by block, and nothing else."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from aios_samplers.block_threshold import BlockThreshold
from aios_samplers.exact import MarkovChain
from test_discrete import TV_BOUND, N

from aios.errors import UsageError
from aios.protocols import MaskedState
from aios.testing import check_sampler

#: tokens 0..3 are words, 4 is EOS, 5 the mask
EOS, MASK, VOCAB = 4, 5, 6


class Scripted:
    """At generated position p of row r the model says token ``target[r, p]`` with probability
    ``confidence[r, p]`` (the rest spread evenly over the other non-mask tokens), whatever the
    state: so the order in which a sampler reveals positions is known in advance."""

    def __init__(self, target, confidence, prompt=(1, 2), suffix=(), eos=None, block=None):
        self.target = np.atleast_2d(target)
        self.confidence = np.broadcast_to(confidence, self.target.shape).astype(np.float64)
        self.prompt, self.suffix, self.eos, self.block = tuple(prompt), tuple(suffix), eos, block
        self.calls, self.rows, self.prefixes = 0, [], []

    @property
    def span(self):
        return slice(len(self.prompt), len(self.prompt) + self.target.shape[1])

    def initial_state(self):
        batch = len(self.target)
        tokens = np.array([[*self.prompt, *[MASK] * self.target.shape[1], *self.suffix]] * batch)
        hook = lambda tokens, n: self.prefixes.append((n, tokens.copy()))  # noqa: E731
        if self.block is None:
            return MaskedState(tokens, MASK, self.eos, on_prefix=hook)
        return BlockState(tokens, MASK, self.eos, on_prefix=hook, block_length=self.block)

    def denoise(self, state, t):
        self.calls += 1
        rows = np.arange(len(self.target)) if state.rows is None else np.asarray(state.rows)
        self.rows.append(rows.tolist())
        width = np.shape(state.tokens)[-1]
        probs = np.full((len(rows), width, VOCAB), 0.0)
        probs[..., :EOS + 1] = 1.0 / (EOS + 1)
        target, confidence = self.target[rows], self.confidence[rows]
        span = np.arange(self.span.start, self.span.stop)
        for i in range(len(rows)):
            rest = (1 - confidence[i]) / EOS
            probs[i, span, :EOS + 1] = rest[:, None]
            probs[i, span, target[i]] = confidence[i]
        with np.errstate(divide="ignore"):
            return np.log(probs)


@dataclass(frozen=True, eq=False)
class BlockState(MaskedState):
    """A head's state that knows its model's block length."""

    block_length: int | None = None


def run(model, steps, seed=0, as_torch=None, **options):
    """The sampler's run on `model`; returns the final tokens and each step's revealed
    positions (as sorted lists of generated-span offsets, per row)."""
    options = {"temperature": 0.0, "fallback": "confident", **options}
    reveals, before = [], model.initial_state().tokens
    denoise = model.denoise
    if as_torch is not None:
        denoise = lambda s, t: torch.as_tensor(model.denoise(s, t), dtype=as_torch)  # noqa: E731

    def callback(step, total, state):
        nonlocal before
        now = state.tokens
        newly = (before == MASK) & (now != MASK)
        reveals.append([sorted((np.flatnonzero(row) - model.span.start).tolist())
                        for row in newly])
        before = now

    out = BlockThreshold(**options).sample(denoise, model.initial_state(), num_steps=steps,
                                           rng=np.random.default_rng(seed), callback=callback)
    return out.tokens, reveals


# -- what each step reveals --------------------------------------------------------------------


def test_each_step_reveals_the_confident_positions_of_the_block_and_at_least_one():
    target = [0, 1, 2, 3, 0, 1, 2, 3]
    confidence = [0.95, 0.5, 0.92, 0.3, 0.99, 0.99, 0.4, 0.6]
    model = Scripted(target, confidence)
    tokens, reveals = run(model, 20, block_length=4, threshold=0.9)
    assert reveals[:5] == [[[0, 2]], [[1]], [[3]], [[4, 5]], [[7]]]
    assert reveals[5] == [[6]] and all(r == [[]] for r in reveals[6:])
    assert model.calls == 6, "no model call once everything is decoded"
    np.testing.assert_array_equal(tokens[0, model.span], target)
    np.testing.assert_array_equal(tokens[0, :2], [1, 2])


def test_nothing_outside_the_current_block_is_revealed_even_when_sure():
    model = Scripted([[0, 1, 2, 3, 0, 1, 2]] * 2, 0.99)
    _, reveals = run(model, 10, block_length=3)
    assert reveals[:3] == [[[0, 1, 2]] * 2, [[3, 4, 5]] * 2, [[6]] * 2]
    assert model.calls == 3


def test_a_threshold_of_one_reveals_one_position_per_step():
    model = Scripted([0, 1, 2, 3], [0.9, 0.99, 0.5, 0.7])
    _, reveals = run(model, 4, block_length=4, threshold=1.0)
    assert reveals == [[[1]], [[0]], [[3]], [[2]]]


def test_only_rows_with_a_mask_in_the_current_block_are_asked():
    # row 0 finishes its block in one step, row 1 needs three: row 0 waits, unasked
    model = Scripted([[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1]],
                     [[0.99, 0.99, 0.99, 0.99, 0.99, 0.99], [0.99, 0.5, 0.4, 0.99, 0.99, 0.99]])
    _, reveals = run(model, 10, block_length=3)
    assert model.rows[:4] == [[0, 1], [1], [1], [0, 1]]
    assert reveals[0] == [[0, 1, 2], [0]] and reveals[3] == [[3, 4, 5]] * 2


# -- the prefix cache --------------------------------------------------------------------------


def test_on_prefix_announces_the_prompt_and_every_finished_block_but_the_last():
    model = Scripted([0, 1, 2, 3, 0, 1, 2, 3, 0], 0.99)
    run(model, 10, block_length=4)
    assert [n for n, _ in model.prefixes] == [2, 6, 10]
    for n, tokens in model.prefixes:
        assert np.all(tokens[:, :n] != MASK), "a reported prefix is fully decoded"
        assert np.all(tokens[:, n:] == MASK), "it is announced as soon as it is final"


def test_the_span_ends_before_an_infilling_suffix():
    model = Scripted([0, 1, 2, 3, 0], 0.99, suffix=(3, 3))
    tokens, reveals = run(model, 10, block_length=3)
    assert reveals[:2] == [[[0, 1, 2]], [[3, 4]]]
    np.testing.assert_array_equal(tokens[0, -2:], [3, 3])
    assert [n for n, _ in model.prefixes] == [2, 5]


def test_block_length_zero_takes_the_heads_block_length():
    model = Scripted([0, 1, 2, 3, 0, 1], 0.99, block=2)
    _, reveals = run(model, 10)
    assert reveals[:3] == [[[0, 1]], [[2, 3]], [[4, 5]]]
    model = Scripted([0, 1, 2, 3, 0, 1], 0.99, block=2)
    _, reveals = run(model, 10, block_length=3)  # the option wins over the head's
    assert reveals[:2] == [[[0, 1, 2]], [[3, 4, 5]]]


def test_without_any_block_length_blocks_are_32_long():
    model = Scripted(np.zeros(40, dtype=int), 0.99)
    _, reveals = run(model, 4)
    assert [len(r[0]) for r in reveals] == [32, 8]


# -- end of text -------------------------------------------------------------------------------


def test_eos_ends_a_row_at_once_and_the_model_is_not_asked_about_it_again():
    target = [[0, 1, EOS, 2, 3, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]]
    confidence = [[0.99, 0.99, 0.99, 0.3, 0.3, 0.3, 0.3, 0.3], [0.99] * 4 + [0.5] * 4]
    model = Scripted(target, confidence, eos=EOS)
    tokens, reveals = run(model, 12, block_length=4)
    np.testing.assert_array_equal(tokens[0, model.span], [0, 1] + [EOS] * 6)
    # step 0: the guard holds the EOS back while positions 0 and 1 are masked
    assert reveals[0] == [[0, 1], [0, 1, 2, 3]]
    assert reveals[1] == [[2, 3, 4, 5, 6, 7], []], "EOS filled the rest of row 0 at once"
    assert model.rows == [[0, 1], [0], [1], [1], [1], [1]]
    assert model.calls == 6 and all(r == [[], []] for r in reveals[6:])


def test_when_every_row_has_ended_the_remaining_steps_are_idle():
    model = Scripted([[EOS, 0, 1, 2, 3, 0, 1, 2]] * 3, 0.99, eos=EOS)
    tokens, reveals = run(model, 16, block_length=2)
    assert model.calls == 1 and len(reveals) == 1  # nothing left to do: the loop ends
    assert np.all(tokens[:, model.span] == EOS)
    assert [n for n, _ in model.prefixes] == [2], "no cache is built when no call follows"


def test_the_eos_guard_holds_an_early_end_until_the_left_is_decoded():
    target = [0, 1, EOS, 2]
    model = Scripted(target, [0.3, 0.4, 0.99, 0.95], eos=EOS)
    _, reveals = run(model, 8, block_length=4, threshold=0.9, eos_guard=True)
    assert reveals[0] == [[3]], "the EOS at 2 waits while 0 and 1 are masked"
    model = Scripted(target, [0.3, 0.4, 0.99, 0.95], eos=EOS)
    _, reveals = run(model, 8, block_length=4, threshold=0.9, eos_guard=False)
    assert reveals[0] == [[2, 3]]


@pytest.mark.parametrize(("steps", "expected"), [(1, [[[0, 1, 2, 3]]]),
                                                 (2, [[[1, 2]], [[0, 3]]])])
def test_the_eos_guard_never_leaves_a_mask_on_a_blocks_last_step(steps, expected):
    model = Scripted([0, 1, 2, EOS], [0.3, 0.4, 0.5, 0.99], eos=EOS)
    tokens, reveals = run(model, steps, block_length=4, eos_guard=True)
    assert reveals == expected
    np.testing.assert_array_equal(tokens[0, model.span], [0, 1, 2, EOS])


# -- the step bound ----------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "counts"), [
    (2, [2, 2, 2, 2]),        # two calls per block, ceil(4 / 2) positions each
    (1, [4, 4]),              # one call per block: the whole block at once
    (3, [2, 1, 1, 2, 1, 1]),  # ceil(4 / 3) = 2, then ceil(2 / 2) = 1, then 1
    (20, [1] * 8),            # a loose bound does not bind: one position a call
])
def test_steps_bound_each_blocks_calls_and_blocks_always_finish(steps, counts):
    model = Scripted(np.arange(8) % 4, 0.3)
    tokens, reveals = run(model, steps, block_length=4)
    assert [len(r[0]) for r in reveals if r[0]] == counts
    assert model.calls == len(counts) and not (tokens == MASK).any()


def test_with_nothing_confident_the_leftmost_mask_is_revealed_by_default():
    target = [0, 1, 2, 3]
    model = Scripted(target, [0.3, 0.4, 0.8, 0.2])
    _, reveals = run(model, 8, block_length=4, threshold=0.9, fallback="leftmost")
    assert reveals[:4] == [[[0]], [[1]], [[2]], [[3]]]
    model = Scripted(target, [0.3, 0.4, 0.8, 0.2])
    _, reveals = run(model, 8, block_length=4, threshold=0.9)  # the run helper: confident
    assert reveals[0] == [[2]]
    assert BlockThreshold().fallback == "leftmost"


# -- numpy and torch ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9},
                                     {"temperature": 0.0}])
def test_a_seed_gives_the_same_tokens_on_numpy_and_torch(options):
    chain = MarkovChain.small(batch=300, length=8)
    outs = {}
    for kind, dtype in (("numpy", np.float64), ("torch", torch.float64),
                        ("numpy", np.float32), ("torch", torch.float32)):
        rng = np.random.default_rng(3)
        state = chain.initial_state(rng)
        if kind == "numpy":
            denoise = lambda s, t, d=dtype: chain.denoise(s, t).astype(d)  # noqa: E731
        else:
            denoise = lambda s, t, d=dtype: torch.as_tensor(chain.denoise(s, t), dtype=d)  # noqa: E731
        sampler = BlockThreshold(block_length=3, threshold=0.6, **options)
        outs[kind, str(dtype)] = sampler.sample(denoise, state, num_steps=6, rng=rng).tokens
    np.testing.assert_array_equal(outs["numpy", str(np.float64)], outs["torch", str(torch.float64)])
    np.testing.assert_array_equal(outs["numpy", str(np.float32)], outs["torch", str(torch.float32)])
    assert (outs["numpy", str(np.float64)] != outs["numpy", str(np.float32)]).mean() < 0.01


def test_the_scripted_order_is_the_same_on_torch():
    model = Scripted([0, 1, 2, 3, 0, 1, 2, 3], [0.95, 0.5, 0.92, 0.3, 0.99, 0.99, 0.4, 0.6])
    expected = run(model, 20, block_length=4)
    model = Scripted([0, 1, 2, 3, 0, 1, 2, 3], [0.95, 0.5, 0.92, 0.3, 0.99, 0.99, 0.4, 0.6])
    got = run(model, 20, block_length=4, as_torch=torch.float32)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1]


def test_one_position_per_step_samples_the_exact_distribution():
    chain = MarkovChain.small(batch=N)
    rng = np.random.default_rng(0)
    out = BlockThreshold(block_length=2, threshold=1.0, eos_guard=False).sample(
        chain.denoise, chain.initial_state(rng), num_steps=chain.length, rng=rng).tokens
    assert chain.total_variation(out) < TV_BOUND


# -- the contract and bad input ----------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"block_length": 4}, {"block_length": 5,
                                                                "temperature": 0.0}])
def test_the_conformance_kit_passes(options):
    check_sampler(BlockThreshold, options=options)


@pytest.mark.parametrize(("options", "problem"), [
    ({"threshold": 0.0}, "threshold must be in"),
    ({"threshold": 1.5}, "threshold must be in"),
    ({"block_length": -1}, "block_length must be a positive integer, or 0"),
    ({"block_length": 2.5}, "block_length must be a positive integer, or 0"),
    ({"block_length": True}, "block_length must be a positive integer, or 0"),
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
])
def test_bad_options_are_refused_as_a_users_mistake_with_the_reason(options, problem):
    with pytest.raises(UsageError, match=problem) as caught:
        BlockThreshold(**options)
    assert caught.value.exit_code == 2


def test_a_head_state_with_a_bad_block_length_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="block_length 0; it must be a positive integer"):
        run(Scripted([0, 1], 0.99, block=0), 4)
