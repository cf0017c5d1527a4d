"""The conformance kits catch each kind of contract violation, by name, all at once."""

import dataclasses

import numpy as np
import pytest

from aios.memory import reference_store
from aios.protocols import GaussianState, Guided, MaskedState
from aios.quant import ReferenceQuantizer
from aios.testing import (
    ConformanceError,
    check_conditioner,
    check_embedder,
    check_head,
    check_quantizer,
    check_sampler,
    check_storage,
)


class FillAll:
    """A correct discrete sampler: argmax of the combined guidance, mask excluded, EOS ends."""

    family = "discrete"

    def __init__(self, exclude_mask=True, copy=True, guided="combine"):
        self.exclude_mask, self.copy, self.guided = exclude_mask, copy, guided

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        if num_steps < 1:
            raise ValueError("num_steps must be at least 1")
        tokens = state.tokens.copy() if self.copy else state.tokens
        for step in range(num_steps):
            out = denoise(dataclasses.replace(state, tokens=tokens), 1 - step / num_steps)
            if isinstance(out, Guided):
                out = (out.conditional if self.guided == "conditional" else
                       out.unconditional + out.scale * (out.conditional - out.unconditional))
            out = np.array(out)
            if self.exclude_mask:
                out[..., state.mask_id] = -np.inf
            masked = tokens == state.mask_id
            tokens[masked] = out.argmax(-1)[masked]
            if state.eos_id is not None:
                tokens[(np.cumsum(tokens == state.eos_id, axis=1) > 0)] = state.eos_id
            if callback:
                callback(step, num_steps, state)
        return dataclasses.replace(state, tokens=tokens)


class StaysNoisy:
    """A continuous 'sampler' that returns its input: it never follows the model."""

    family = "continuous"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        for step in range(num_steps):
            denoise(state, 500.0)
            if callback:
                callback(step, num_steps, state)
        return state


def violations(check, *args, **kwargs):
    with pytest.raises(ConformanceError) as caught:
        check(*args, **kwargs)
    return caught.value.violations


def test_a_correct_sampler_passes_every_check_and_gets_their_names():
    assert check_sampler(FillAll) == [
        "builds", "protocol", "family", "fills_masked_positions", "eos_ends_row", "rows_subset",
        "guidance", "callback_every_step", "seed_reproduces", "input_state_untouched",
        "refuses_zero_steps"]


@pytest.mark.parametrize(("options", "broken"), [
    ({"exclude_mask": False}, {"fills_masked_positions", "eos_ends_row", "guidance"}),
    ({"copy": False}, {"input_state_untouched"}),
    ({"guided": "conditional"}, {"guidance"}),
])
def test_a_sampler_breaking_the_contract_is_named_for_each_broken_check(options, broken):
    found = violations(check_sampler, FillAll, options=options)
    assert set(found) == broken, found


def test_a_continuous_sampler_that_ignores_the_model_fails_every_prediction_type():
    found = violations(check_sampler, StaysNoisy)
    assert {"reaches_data_epsilon", "reaches_data_x0", "reaches_data_v", "guidance",
            "refuses_zero_steps"} == set(found)
    assert "away from it" in found["reaches_data_x0"]


def test_the_error_message_lists_every_violation():
    with pytest.raises(ConformanceError) as caught:
        check_sampler(StaysNoisy)
    message = str(caught.value)
    assert message.startswith("sampler StaysNoisy breaks 5 contract check(s):")
    assert message.count("\n  - ") == 5


class BareArrayHead:
    """The old shout example's mistake: a discrete head whose state is a bare array."""

    modality, family = "text", "discrete"

    def initial_state(self, request, rng):
        return np.zeros(4, int)

    def denoise(self, state, t, request):
        return np.zeros((1, 4, 5))

    def decode(self, state, request):
        return "x"


class NoisePointHead:
    """A correct continuous head: its model is the exact denoiser of a point mass at 0.5."""

    modality, family = "toy", "continuous"

    def initial_state(self, request, rng):
        from aios.schedules import NoiseSchedule

        return GaussianState(rng.standard_normal((2, 3)), NoiseSchedule.linear(), "x0")

    def denoise(self, state, t, request):
        return np.full_like(state.x, 0.5)

    def decode(self, state, request):
        return np.round(state.x, 6)


class HalfWriter(NoisePointHead):
    """Offers `write` but no `output_suffix`: an incomplete extra."""

    def write(self, output, path, *, rows=None):
        return []


class ListedOptions(NoisePointHead):
    """Declares its per-request options as a tuple, not a mapping of name to description."""

    generation_options = ("length",)


class TextualRowTimes(NoisePointHead):
    """Says `row_times` with a string, which a server would take as true."""

    row_times = "yes"


@pytest.mark.parametrize(("head", "words"), [(ListedOptions, "generation_options"),
                                             (TextualRowTimes, "row_times")])
def test_a_malformed_declaration_of_options_or_row_times_is_named(head, words):
    found = violations(check_head, head, prompt="p")
    assert set(found) == {"extras"}
    assert words in found["extras"]


def test_a_head_with_a_bare_array_state_fails_at_initial_state():
    found = violations(check_head, BareArrayHead)
    assert "initial_state" in found
    assert found["initial_state"] == "initial_state returned ndarray, not a MaskedState"


def test_a_correct_continuous_head_passes_and_an_incomplete_extra_is_named():
    assert "decodes_reproducibly" in check_head(NoisePointHead, prompt="p")
    found = violations(check_head, HalfWriter, prompt="p")
    assert set(found) == {"extras"}
    assert "output_suffix" in found["extras"]


def test_the_reference_storage_passes_and_a_backend_that_ignores_filters_does_not():
    assert "filter_before_ranking" in check_storage(reference_store)

    class Unfiltered:
        def __init__(self, store):
            self.store = store

        def __getattr__(self, name):
            return getattr(self.store, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.store.close()

        def search(self, query, k=10, *, filter=None, **kwargs):
            return self.store.search(query, k, **kwargs)

    def unfiltered(path, **kwargs):
        return Unfiltered(reference_store(path, **kwargs))

    assert set(violations(check_storage, unfiltered)) == {"filter_before_ranking"}


def test_a_storage_that_creates_a_store_on_a_read_only_open_is_refused():
    def creating(path, *, dim=None, read_only=False, retention=None):
        return reference_store(path, dim or 8, read_only=False, retention=retention)

    found = violations(check_storage, creating)
    assert "read_only_missing_refused" in found
    assert "read_only_refuses_writes" in found


def test_a_quantizer_whose_bytes_differ_from_the_reference_is_refused():
    class Shifted(ReferenceQuantizer):
        def quantize(self, weights, *, name="tensor", calibration=None):
            packed = super().quantize(weights, name=name, calibration=calibration)
            return dataclasses.replace(packed, scales=np.asarray(packed.scales) * 1.001)

    assert "reference_bytes_8bit" in check_quantizer(ReferenceQuantizer)
    assert {"reference_bytes_8bit", "reference_bytes_4bit"} <= set(
        violations(check_quantizer, Shifted))


class Unnormalised:
    name, dim = "raw", 4

    def embed(self, texts, *, progress=False):
        return np.array([[len(t), 1.0, 0.0, 2.0] for t in texts], np.float32).reshape(-1, 4)


def test_an_embedder_whose_rows_are_not_unit_length_is_refused():
    found = violations(check_embedder, Unnormalised)
    assert set(found) == {"shape_and_unit_rows"}
    assert "L2-normalised" in found["shape_and_unit_rows"]


class PromptRewriter:
    def condition(self, request, context):
        return dataclasses.replace(request, prompt=request.prompt.upper(), context=())


class Tagger:
    def condition(self, request, context):
        return request.with_context("tag")


def test_a_conditioner_must_only_add_to_the_request():
    assert check_conditioner(Tagger)[-1] == "deterministic"
    found = violations(check_conditioner, PromptRewriter)
    assert set(found) == {"returns_grown_request"}
    assert found["returns_grown_request"] == "condition changed prompt"


def test_a_factory_that_cannot_build_stops_with_that_one_violation():
    def broken():
        raise RuntimeError("no weights")

    assert violations(check_sampler, broken) == {"builds": "raised RuntimeError: no weights"}


def test_masked_states_from_the_kit_keep_prompt_positions():
    # a guard on the kit itself: its toy discrete start has unmasked prompt positions
    from aios.testing import _masked_start

    start = _masked_start()
    assert isinstance(start, MaskedState)
    assert (start.tokens[:, :3] != start.mask_id).all() and (start.tokens[:, 3:] ==
                                                             start.mask_id).all()
