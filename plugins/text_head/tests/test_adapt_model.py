"""The adapted model: training attention, the vectorised loss against a block-by-block
computation, LoRA wrapping and merging."""

import pytest
import torch
import torch.nn.functional as F
from adapt_fixtures import MASK, VOCAB, tiny_adapted, tiny_llama
from aios_text.adapt.model import BlockDiffusionLM, merge_llama_lora, training_mask
from aios_text.adapt.objective import block_diffusion_loss


def test_training_mask_is_causal_on_clean_and_block_local_on_noisy():
    m = training_mask(8, 4, copies=2)[0, 0]
    assert m.shape == (24, 24)
    assert torch.equal(m[:8, :8], torch.ones(8, 8, dtype=torch.bool).tril())
    assert not m[:8, 8:].any()  # clean never sees noisy
    # noisy copy 1, position 5 (block 1): clean block 0 and its own block 1, nothing else
    row = m[8 + 5]
    assert row[:4].all() and not row[4:8].any()
    assert row[8 + 4:8 + 8].all() and not row[8:8 + 4].any()
    assert not row[16:].any()  # copies never see each other


def test_lora_starts_as_the_base_model():
    base = tiny_llama()
    ids = torch.randint(6, VOCAB, (2, 10))
    want = base(input_ids=ids).logits
    model = BlockDiffusionLM(tiny_llama(), MASK, lora_rank=4)
    positions = torch.arange(10)[None].expand(2, -1)
    causal = torch.ones(10, 10, dtype=torch.bool).tril()[None, None].expand(2, 1, -1, -1)
    got = model.logits(model.hidden(ids, causal, positions))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_merging_lora_keeps_the_function():
    model = tiny_adapted()
    ids = torch.randint(6, VOCAB, (1, 12))
    positions = torch.arange(12)[None]
    full = torch.ones(1, 1, 12, 12, dtype=torch.bool)
    before = model.logits(model.hidden(ids, full, positions))
    assert merge_llama_lora(model.network) == 2 * 7
    after = model.logits(model.hidden(ids, full, positions))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def _naive_loss(model, ids, masked, block_size):
    """Each (row, copy, block) on its own: the clean prefix causal, then the noisy block
    bidirectional; token i from hidden i - 1 (a block's first token from the prefix)."""
    losses = []
    batch, length = ids.shape
    for row in range(batch):
        for copy, copy_masked in enumerate((masked[row], ~masked[row])):
            noisy = torch.where(copy_masked, MASK, ids[row])
            for s in range(0, length, block_size):
                e = s + block_size
                x = torch.cat([ids[row, :s], noisy[s:e]])[None]
                q = torch.arange(e)
                allowed = (q[None, :] <= q[:, None]) | ((q[:, None] >= s) & (q[None, :] >= s))
                h = model.hidden(x, allowed[None, None], q[None])[0]
                for i in range(max(s, 1), e):
                    first = i == s
                    if first and copy == 1:
                        continue  # a block's first token counts once (in copy 1)
                    if not first and not copy_masked[i]:
                        continue
                    logits = model.logits(h[i - 1])
                    losses.append(F.cross_entropy(logits[None], ids[row, i][None]))
    return torch.stack(losses).mean(), len(losses)


@pytest.mark.parametrize("block_size", [4, 8])
def test_vectorised_loss_equals_block_by_block_computation(block_size):
    model = tiny_adapted()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(6, VOCAB, (2, 16), generator=g)
    masked = torch.rand(2, 16, generator=g) < 0.5
    want, count = _naive_loss(model, ids, masked, block_size)
    assert count == 2 * 15  # every token but the first is a target exactly once
    got = block_diffusion_loss(model, ids, masked, block_size, MASK)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
