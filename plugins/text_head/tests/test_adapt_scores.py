"""The perplexity bound of an adapted model, against likelihoods computed another way."""

import itertools
import math

import pytest
import torch
from adapt_fixtures import MASK, tiny_adapted
from aios_text.adapt.scores import ar_perplexity, perplexity_bound


def _block_logits(model, prefix, block):
    """Logits predicting each block position from one full forward: prefix causal, the block
    bidirectional over prefix and itself; the first from the prefix's last state."""
    x = torch.tensor(prefix + block)
    n, s = len(x), len(prefix)
    q = torch.arange(n)
    allowed = (q[None, :] <= q[:, None]) | ((q[:, None] >= s) & (q[None, :] >= s))
    hidden = model.hidden(x[None], allowed[None, None], q[None])[0]
    return torch.log_softmax(model.logits(hidden[s - 1:n - 1]).float(), -1)


def _exact_log_bound(model, row, block_size):
    """The bound's expectation by enumerating every (l, subset) of each block."""
    inner = block_size - 1
    total = 0.0
    for b in range(block_size, len(row), block_size):
        prefix, block = row[:b], row[b:b + block_size]
        total += float(_block_logits(model, prefix, [block[0]] + [MASK] * inner)[0, block[0]])
        for size in range(1, inner + 1):
            subsets = list(itertools.combinations(range(1, block_size), size))
            for subset in subsets:
                noisy = [MASK if i in subset else t for i, t in enumerate(block)]
                logp = _block_logits(model, prefix, noisy)
                part = sum(float(logp[i, block[i]]) for i in subset)
                total += part * (inner / size) / (inner * len(subsets))
    return total


@torch.inference_mode()
@pytest.mark.parametrize("block_size", [2, 3])
def test_the_bound_is_the_enumerated_elbo(block_size):
    """Blocks of 2: the bound is the exact likelihood (one position to diffuse); blocks of 3:
    the Monte Carlo estimate converges to the ELBO computed by enumeration."""
    model = tiny_adapted()
    row = [8, 20, 30, 12, 40, 9, 7, 33, 21, 17, 5, 11][:4 * block_size]
    want = _exact_log_bound(model, row, block_size)
    samples = 1 if block_size == 2 else 400
    got = perplexity_bound(model, torch.tensor([row]), block_size, samples=samples)
    want_ppl = math.exp(-want / (len(row) - block_size))
    assert got == pytest.approx(want_ppl, rel=1e-4 if block_size == 2 else 0.03)


@torch.inference_mode()
def test_ar_perplexity_is_the_causal_likelihood():
    model = tiny_adapted(lora_rank=0)
    rows = torch.tensor([[8, 20, 30, 12, 40, 9], [7, 33, 21, 17, 5, 11]])
    total = 0.0
    for row in rows.tolist():
        for i in range(2, len(row)):
            logits = model.network(input_ids=torch.tensor([row[:i]])).logits[0, -1].float()
            total += float(torch.log_softmax(logits, -1)[row[i]])
    assert ar_perplexity(model.network, rows, context=2) == pytest.approx(
        math.exp(-total / 8), rel=1e-5)


def test_bad_block_sizes_are_refused():
    with pytest.raises(ValueError, match="divide"):
        perplexity_bound(tiny_adapted(), torch.zeros(1, 10, dtype=torch.long), 4)
