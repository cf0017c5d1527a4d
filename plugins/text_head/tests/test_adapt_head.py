"""The adapted model's head, driven as a block-wise sampler drives it, against the decoder
that runs the model directly (`generate_blocks`)."""

import numpy as np
import pytest
import torch
from adapt_fixtures import MASK, tiny_materialized
from aios_text.adapt.decode import generate_blocks
from aios_text.adapt.head import END_ID, BlockDiffusionTextHead
from aios_text.adapt.shipping import open_adapted

from aios.errors import UsageError
from aios.protocols import GenerationRequest


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_materialized(tmp_path_factory.mktemp("tiny-adapted"))


def _drive(head, request, threshold):
    """The block-threshold rule: reveal in the current block every masked position at least
    `threshold` likely, at least the most confident; announce finished blocks."""
    state = head.initial_state(request, np.random.default_rng(0))
    tokens = state.tokens.copy()
    start = int(np.argmax(tokens[0] == MASK))
    block = state.block_length
    for begin in range(start, tokens.shape[1], block):
        end = min(begin + block, tokens.shape[1])
        while (tokens[:, begin:end] == MASK).any():
            logits = head.denoise(type(state)(**{**state.__dict__, "tokens": tokens}), 1.0,
                                  request)
            part = logits[:, begin:end].clone()
            part[..., MASK] = -torch.inf
            conf, cand = torch.softmax(part, -1).max(-1)
            masked = torch.from_numpy(tokens[:, begin:end] == MASK)
            conf = torch.where(masked, conf, -1.0)
            reveal = masked & (conf >= threshold)
            reveal[torch.arange(len(tokens)), conf.argmax(-1)] |= masked.any(-1)
            tokens[:, begin:end] = torch.where(reveal, cand, torch.from_numpy(
                tokens[:, begin:end])).numpy()
        state.on_prefix(tokens, end)
    return tokens, state


def test_head_steps_equal_the_direct_decoder(tiny_dir):
    head = BlockDiffusionTextHead(str(tiny_dir), length=12, block_size=4)
    request = GenerationRequest(prompt="w9 w10 w11", modality="text", num_steps=12)
    tokens, state = _drive(head, request, threshold=0.6)
    model, tokenizer, _ = open_adapted(str(tiny_dir))
    want = generate_blocks(model, [9, 10, 11], new_tokens=12, block_size=4, threshold=0.6)
    assert tokens[0, 3:].tolist() == want.ids
    ids = want.ids[:want.ids.index(END_ID)] if END_ID in want.ids else want.ids
    # the output shows the prompt and what was generated, as the tiny models' head does
    assert head.decode(state.__class__(**{**state.__dict__, "tokens": tokens}), request) == \
        tokenizer.decode([9, 10, 11, *ids])


def test_rows_of_a_batch_decode_as_they_would_alone(tiny_dir):
    head = BlockDiffusionTextHead(str(tiny_dir), length=8, block_size=4)
    prompts = ["w9 w10 w11 w12 w13", "w20"]
    batch, _ = _drive(head, GenerationRequest(prompt=prompts, modality="text", num_steps=8),
                      0.7)
    for row, prompt in enumerate(prompts):
        alone, _ = _drive(head, GenerationRequest(prompt=prompt, modality="text", num_steps=8),
                          0.7)
        assert batch[row, -8:].tolist() == alone[0, -8:].tolist()


def test_bad_requests_are_usage_errors(tiny_dir):
    head = BlockDiffusionTextHead(str(tiny_dir), length=8)
    with pytest.raises(UsageError, match="more than the model's"):
        head.initial_state(GenerationRequest(prompt="w9", modality="text", num_steps=4,
                                             options={"length": 10_000}),
                           np.random.default_rng(0))
    with pytest.raises(UsageError, match="empty"):
        head.initial_state(GenerationRequest(prompt="", modality="text", num_steps=4),
                           np.random.default_rng(0))


def _reveal(tokens, logits, begin, end, threshold):
    part = logits[:, begin:end].clone()
    part[..., MASK] = -torch.inf
    conf, cand = torch.softmax(part, -1).max(-1)
    masked = torch.from_numpy(tokens[:, begin:end] == MASK)
    conf = torch.where(masked, conf, -1.0)
    reveal = masked & (conf >= threshold)
    reveal[torch.arange(len(tokens)), conf.argmax(-1)] |= masked.any(-1)
    tokens[:, begin:end] = torch.where(reveal, cand, torch.from_numpy(
        tokens[:, begin:end])).numpy()


def test_concurrent_generations_in_one_forward_decode_as_they_would_alone(tiny_dir):
    """`denoise_many` (how the server joins requests): generations at different points of
    their blocks, with different prompt lengths, share each forward."""
    head = BlockDiffusionTextHead(str(tiny_dir), length=8, block_size=4)
    requests = [GenerationRequest(prompt=p, modality="text", num_steps=8)
                for p in (["w9 w10 w11 w12 w13", "w30"], "w20", "w14 w15")]
    runs = []
    for request in requests:
        state = head.initial_state(request, np.random.default_rng(0))
        start = int(np.argmax(state.tokens[0] == MASK))
        runs.append({"state": state, "tokens": state.tokens.copy(), "begin": start})
    runs[1]["threshold"], runs[0]["threshold"], runs[2]["threshold"] = 0.5, 0.7, 0.95
    calls_before = head.calls
    while True:
        live = [r for r in runs if r["begin"] < r["tokens"].shape[1]]
        if not live:
            break
        states = [type(r["state"])(**{**r["state"].__dict__, "tokens": r["tokens"]})
                  for r in live]
        outputs = head.denoise_many([(s, 1.0, req) for s, req in zip(
            states, [requests[runs.index(r)] for r in live], strict=True)])
        for run, logits in zip(live, outputs, strict=True):
            begin = run["begin"]
            end = min(begin + 4, run["tokens"].shape[1])
            _reveal(run["tokens"], logits, begin, end, run["threshold"])
            if not (run["tokens"][:, begin:end] == MASK).any():
                run["state"].on_prefix(run["tokens"], end)
                run["begin"] = end
    together_calls = head.calls - calls_before
    alone_calls = 0
    for run, request in zip(runs, requests, strict=True):
        before = head.calls
        alone, _ = _drive(head, request, run["threshold"])
        alone_calls += head.calls - before
        assert run["tokens"][:, -8:].tolist() == alone[:, -8:].tolist()
    assert together_calls < alone_calls  # the forwards really were shared


def test_a_state_from_elsewhere_is_refused(tiny_dir):
    from aios.protocols import MaskedState

    head = BlockDiffusionTextHead(str(tiny_dir), length=8, block_size=4)
    state = MaskedState(np.full((1, 6), MASK), MASK)
    with pytest.raises(ValueError, match="initial_state"):
        head.denoise(state, 1.0, GenerationRequest(prompt="w9", modality="text", num_steps=4))
