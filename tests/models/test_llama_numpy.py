"""The NumPy Llama forward (`aios.models.ArrayLlama`) against `transformers`' own Llama: the same
hidden states and logits from float weights (1e-4), the same with a key/value cache filled over
two calls, and close to the torch model from the same int8 ArrowQuant directory (the only
difference there is the rounding of the activations to int8)."""

import numpy as np
import pytest
import torch

from aios.errors import AiosError
from aios.models import ArrayLlama
from aios.quant import ReferenceQuantizer
from aios.runtime import BlockKVCache, RowCaches

transformers = pytest.importorskip("transformers")


def tiny_llama(tied: bool, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=tied,
        attn_implementation="sdpa")
    network = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from 1, so a mistake in them shows
        for name, p in network.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return network


def float_weights(network):
    return {n: t.detach().numpy().copy() for n, t in network.state_dict().items()}


def block_causal(length: int, block: int, pad: int):
    """(1, 1, length, length) True = may attend: causal across blocks, full inside one; the
    first `pad` positions are padding that only sees itself."""
    q = np.arange(length)
    mask = (q[None, :] // block <= q[:, None] // block) & (q[None, :] >= pad) & (q[:, None] >= pad)
    mask |= np.eye(length, dtype=bool) & (q[:, None] < pad)
    return mask[None, None]


@pytest.mark.parametrize("tied", [True, False])
def test_float_weights_give_transformers_hidden_states_and_logits(tied):
    network = tiny_llama(tied)
    array = ArrayLlama(network.config.to_dict(), float_weights(network),
                       backend=ReferenceQuantizer())
    ids = np.random.default_rng(1).integers(0, 96, (2, 12))
    mask = np.concatenate([block_causal(12, 4, 0), block_causal(12, 4, 3)])
    positions = np.stack([np.arange(12), np.clip(np.arange(12) - 3, 0, None) + 7])
    with torch.no_grad():
        want = network.model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             position_ids=torch.tensor(positions)).last_hidden_state
        want_logits = network.lm_head(want)
    got = array.hidden(array.embed(ids), mask, positions)
    real = slice(3, None)  # the second row's padding is nobody's business
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1, real], want[1, real].numpy(), atol=1e-4)
    np.testing.assert_allclose(array.logits(got[0]), want_logits[0].numpy(), atol=1e-4, rtol=0)
    assert array.parameter_count() == sum(p.numel() for p in network.parameters())


def test_a_cache_filled_over_two_calls_gives_the_full_forward():
    network = tiny_llama(True)
    array = ArrayLlama(network.config.to_dict(), float_weights(network),
                       backend=ReferenceQuantizer())
    ids = np.random.default_rng(2).integers(0, 96, (1, 10))
    causal = np.tril(np.ones((10, 10), dtype=bool))[None, None]
    full = array.hidden(array.embed(ids), causal, np.arange(10)[None])
    cache = BlockKVCache()
    array.hidden(array.embed(ids[:, :6]), causal[..., :6, :6], np.arange(6)[None],
                 RowCaches([cache], [6], [6]))
    rest = array.hidden(array.embed(ids[:, 6:]), causal[..., 6:, :], np.arange(6, 10)[None],
                        RowCaches([cache], [4], [0]))
    np.testing.assert_allclose(rest, full[:, 6:], atol=1e-5)
    assert cache.get_seq_length() == 6 and isinstance(cache.keys[0], np.ndarray)


def test_an_int8_directory_runs_close_to_the_torch_model_of_it(tmp_path):
    from aios.models import FAMILIES, PretrainedModel, convert_pretrained, load_pretrained

    network = tiny_llama(True)
    directory = convert_pretrained(PretrainedModel(network, FAMILIES["llama"]), tmp_path / "q",
                                   bits=8, group_size=32)
    array = ArrayLlama.load(directory)
    torch_model = load_pretrained(directory)  # the same int8 weights, dequantized once
    ids = np.random.default_rng(3).integers(0, 96, (1, 16))
    causal = np.tril(np.ones((16, 16), dtype=bool))[None, None]
    with torch.no_grad():
        hidden = torch_model.network.model(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(causal),
            position_ids=torch.arange(16)[None]).last_hidden_state
        want = torch_model.network.lm_head(hidden)[0].numpy()
    got = array.logits(array.hidden(array.embed(ids), causal, np.arange(16)[None]))[0]
    relative = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert relative < 0.03, relative
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9


def test_what_it_cannot_run_is_refused_by_name():
    network = tiny_llama(False)
    weights = float_weights(network)
    config = network.config.to_dict()
    del weights["model.layers.1.mlp.down_proj.weight"]
    with pytest.raises(AiosError, match=r"model\.layers\.1\.mlp\.down_proj\.weight"):
        ArrayLlama(config, weights, backend=ReferenceQuantizer())
    scaled = dict(config, rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0})
    with pytest.raises(AiosError, match="llama3.*runtime.name: torch"):
        ArrayLlama(scaled, float_weights(network), backend=ReferenceQuantizer())
