"""Block decoding of an adapted model, checked against computations that share none of its
code: `transformers`' own greedy `generate`, and a full forward without any cache."""

import numpy as np
import pytest
import torch
from adapt_fixtures import MASK, VOCAB, tiny_adapted
from aios_text.adapt.decode import generate_blocks, step_hidden, step_hidden_rows
from aios_text.adapt.model import BlockDiffusionLM

from aios.runtime import BlockKVCache


def test_blocks_of_one_are_greedy_autoregressive_decoding():
    model = tiny_adapted(lora_rank=0)  # a plain Llama: blocks of 1 must be exactly AR
    prompt = [7, 9, 11, 13]
    out = generate_blocks(model, prompt, new_tokens=12, block_size=1, threshold=1.0,
                          banned=tuple(range(6)))
    network = model.network
    ids = torch.tensor([prompt])
    for _ in range(12):  # greedy AR by full forwards, the banned ids excluded
        logits = network(input_ids=ids).logits[0, -1]
        logits[:6] = -torch.inf
        ids = torch.cat([ids, logits.argmax()[None, None]], dim=1)
    assert out.ids == ids[0, 4:].tolist()
    assert out.forward_calls == 1 + 12


def _uncached_step_logits(model: BlockDiffusionLM, prefix: list[int], block: list[int]):
    """The logits of a block's positions from one full forward with the training attention."""
    x = torch.tensor(prefix + block)
    n, s = len(x), len(prefix)
    q = torch.arange(n)
    allowed = (q[None, :] <= q[:, None]) | ((q[:, None] >= s) & (q[None, :] >= s))
    h = model.hidden(x[None], allowed[None, None], q[None])[0]
    return model.logits(h[s - 1:n - 1])


@torch.inference_mode()
def test_every_step_matches_an_uncached_forward():
    model = tiny_adapted()
    prompt = [8, 20, 30, 12, 40]
    steps = []
    generate_blocks(model, prompt, new_tokens=8, block_size=4, threshold=0.5,
                    fallback="confident", on_step=lambda ids: steps.append(list(ids)))
    # replay: before each step the state was the previous step's ids
    state = [MASK] * 4
    done: list[int] = []
    for ids in steps:
        block_index = len(done) // 4
        logits = _uncached_step_logits(model, prompt + done, state).float()
        logits[:, MASK] = -torch.inf
        conf, cand = torch.softmax(logits, -1).max(-1)
        masked = torch.tensor(state) == MASK
        conf = torch.where(masked, conf, -1.0)
        reveal = masked & (conf >= 0.5)
        reveal[int(conf.argmax())] = True
        state = torch.where(reveal, cand, torch.tensor(state)).tolist()
        assert ids[block_index * 4:] == state
        if MASK not in state:
            done += state
            state = [MASK] * 4


def test_with_nothing_confident_the_leftmost_mask_is_revealed():
    model = tiny_adapted()
    steps = []
    generate_blocks(model, [8, 20, 30], new_tokens=8, block_size=4, threshold=1.0,
                    on_step=lambda ids: steps.append(list(ids)))
    # a threshold of 1 is never reached: left to right, one position a step
    for n, ids in enumerate(steps, start=1):
        block = ids[(n - 1) // 4 * 4:]
        assert [t != MASK for t in block] == [i < (n - 1) % 4 + 1 for i in range(4)]


def test_end_of_text_stops_and_is_not_returned():
    model = tiny_adapted()
    free = generate_blocks(model, [9, 10], new_tokens=16, block_size=4)
    end = free.ids[5]
    out = generate_blocks(model, [9, 10], new_tokens=16, block_size=4, end_id=end)
    assert out.stopped_at_end and end not in out.ids and len(out.ids) <= 5 + 3


def test_infilling_keeps_the_suffix_and_fills_the_gap_only():
    model = tiny_adapted()
    out = generate_blocks(model, [9, 10, 11], new_tokens=6, suffix=[20, 21], threshold=0.7)
    assert len(out.ids) == 6 and MASK not in out.ids


def test_bad_arguments_are_refused():
    model = tiny_adapted()
    with pytest.raises(ValueError, match="at least one prompt token"):
        generate_blocks(model, [], new_tokens=4)
    with pytest.raises(ValueError, match="threshold"):
        generate_blocks(model, [3], new_tokens=4, threshold=0.0)
    assert VOCAB > MASK


def merged_twins():
    """The tiny adapted model merged (as shipping does), in torch and in NumPy with float
    weights: the two runtimes with nothing rounded differently."""
    from aios_text.adapt.array_model import ArrayBlockLM
    from aios_text.adapt.shipping import merged_network

    from aios.models import ArrayLlama
    from aios.quant import ReferenceQuantizer

    network = merged_network(tiny_adapted())
    weights = {n: t.detach().numpy().copy() for n, t in network.state_dict().items()}
    array = ArrayLlama(network.config.to_dict(), weights, backend=ReferenceQuantizer())
    return BlockDiffusionLM.from_merged(network, MASK), ArrayBlockLM(array, MASK)


def test_the_numpy_runtime_decodes_the_same_tokens_as_torch():
    torch_model, array_model = merged_twins()
    for threshold, block in [(0.6, 4), (0.9, 8), (1.0, 1)]:
        want = generate_blocks(torch_model, [8, 20, 30], new_tokens=12, block_size=block,
                               threshold=threshold)
        got = generate_blocks(array_model, [8, 20, 30], new_tokens=12, block_size=block,
                              threshold=threshold)
        assert got.ids == want.ids and got.forward_calls == want.forward_calls
    infill = [generate_blocks(m, [9, 10, 11], new_tokens=6, suffix=[20, 21], threshold=0.7).ids
              for m in (torch_model, array_model)]
    assert infill[0] == infill[1]


def _as_torch(x):
    return torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x


@pytest.mark.parametrize("runtime", ["torch", "numpy"])
@torch.inference_mode()
def test_rows_in_one_forward_match_each_row_alone(runtime):
    """Rows with caches of different lengths, different pending counts and block sizes, in one
    padded forward: each row's hidden states and resulting cache equal a forward of it alone."""
    model = tiny_adapted() if runtime == "torch" else merged_twins()[1]
    prefixes = [[8, 20, 30, 12, 40, 9, 7], [11], [13, 14, 15]]
    pending = [[21, 22, 23], [], [30]]
    blocks = [[MASK, 25, MASK, MASK], [MASK, MASK], [MASK] * 6]

    def cached(prefix):
        cache = BlockKVCache()
        step_hidden(model, cache, torch.tensor(prefix), pending=len(prefix), start=0)
        return cache

    alone, alone_caches = [], []
    for prefix, p, b in zip(prefixes, pending, blocks, strict=True):
        cache = cached(prefix)
        alone.append(step_hidden(model, cache, torch.tensor(p + b), pending=len(p),
                                 start=len(prefix)))
        alone_caches.append(cache)
    caches = [cached(prefix) for prefix in prefixes]
    together = step_hidden_rows(model, caches, [torch.tensor(p + b) for p, b in
                                                zip(pending, blocks, strict=True)],
                                pending=[len(p) for p in pending],
                                start=[len(prefix) for prefix in prefixes])
    for a, t in zip(alone, together, strict=True):
        assert t.shape == a.shape
        torch.testing.assert_close(_as_torch(t), _as_torch(a), atol=1e-5, rtol=1e-5)
    for a, c in zip(alone_caches, caches, strict=True):
        assert c.get_seq_length() == a.get_seq_length()
        for layer in range(len(a.keys)):
            for mine, theirs in [(c.keys[layer], a.keys[layer]),
                                 (c.values[layer], a.values[layer])]:
                torch.testing.assert_close(_as_torch(mine), _as_torch(theirs), atol=1e-5,
                                           rtol=1e-5)
