"""Block decoding of pretrained diffusion models in torch: the caches are exact where they
should be (block-causal attention), cheaper where they approximate (bidirectional), batches
with padding decode each row as alone, and Dream's shifted logits are read at the right place."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "families"))
from family_nets import (
    DREAM_CONFIG,
    LLADA_CONFIG,
    llada_weights,
    qwen_llama_weights,
    write_checkpoint,
)

from aios.models.families import load_pretrained
from aios.runtime.block_decoding import decode_blocks

PROMPTS = [[5, 9, 14, 3, 22], [7, 1, 30]]


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    path = write_checkpoint(tmp_path_factory.mktemp("llada"), llada_weights(), LLADA_CONFIG)
    return load_pretrained(path)


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    weights = qwen_llama_weights(DREAM_CONFIG, bias=True)
    return load_pretrained(write_checkpoint(tmp_path_factory.mktemp("dream"), weights,
                                            DREAM_CONFIG))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_with_block_causal_attention_the_caches_change_nothing(request, family, cache):
    model = request.getfixturevalue(family)
    options = {"new_tokens": 12, "block_size": 4, "steps_per_block": 2,
               "attention": "block-causal"}
    plain, plain_stats = decode_blocks(model, PROMPTS, cache="none", **options)
    cached, stats = decode_blocks(model, PROMPTS, cache=cache, **options)
    torch.testing.assert_close(cached, plain, rtol=0, atol=0)
    assert stats.forward_calls == plain_stats.forward_calls
    assert stats.positions < plain_stats.positions


def test_the_decoded_tokens_are_the_models_greedy_choices(llada):
    """One position per step, no cache: each step commits the most confident argmax of a plain
    forward pass over the sequence so far (checked step by step against `model(...)`)."""
    prompt = PROMPTS[0]
    out, _ = decode_blocks(llada, [prompt], new_tokens=4, block_size=4, steps_per_block=4)
    tokens = torch.tensor([prompt + [69] * 4])
    for _ in range(4):
        with torch.inference_mode():
            logits = llada(tokens)[0, len(prompt):].clone()
            logits[:, 69] = -torch.inf
        conf, cand = torch.softmax(logits, -1).max(-1)
        conf[tokens[0, len(prompt):] != 69] = -1
        at = int(conf.argmax())
        tokens[0, len(prompt) + at] = cand[at]
    assert out[0].tolist() == tokens[0, len(prompt):].tolist()


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_bidirectional_decoding_finishes_and_dual_computes_the_fewest_positions(llada, cache):
    out, stats = decode_blocks(llada, PROMPTS, new_tokens=16, block_size=8, cache=cache,
                               steps_per_block=4)
    assert out.shape == (2, 16) and not bool((out == 69).any())
    full = (2 * (5 + 16)) * stats.forward_calls
    assert stats.positions == full if cache == "none" else stats.positions < full


def test_a_padded_batch_decodes_each_row_as_alone(llada):
    together, _ = decode_blocks(llada, PROMPTS, new_tokens=8, block_size=4, steps_per_block=2)
    for row, prompt in enumerate(PROMPTS):
        alone, _ = decode_blocks(llada, [prompt], new_tokens=8, block_size=4, steps_per_block=2)
        assert together[row].tolist() == alone[0].tolist()


def test_a_threshold_reveals_several_positions_per_step(llada):
    _, slow = decode_blocks(llada, PROMPTS, new_tokens=16, block_size=8)
    _, fast = decode_blocks(llada, PROMPTS, new_tokens=16, block_size=8, threshold=0.05)
    assert sum(fast.steps_per_block) < sum(slow.steps_per_block) == 16


def test_an_ar_model_without_a_mask_token_is_refused_with_the_fix(tmp_path):
    from family_nets import LLAMA_CONFIG

    model = load_pretrained(write_checkpoint(tmp_path, qwen_llama_weights(LLAMA_CONFIG,
                                                                          bias=False),
                                             LLAMA_CONFIG))
    with pytest.raises(ValueError, match="has no mask token; pass mask_token_id="):
        decode_blocks(model, PROMPTS, new_tokens=4)
