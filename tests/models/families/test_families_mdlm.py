"""MDLM loads from tiny random weights in the exact published layout (`backbone.` names of
kuleshov-group/mdlm-owt), computes the logits of an independent plain-torch DiT within 1e-4 in
float32, applies the SUBS parameterization, refuses damaged checkpoints by name, and generates
through the block decoder and the samplers."""

import numpy as np
import pytest
import torch
from family_nets import MDLM_CONFIG, mdlm_reference_forward, mdlm_weights, write_checkpoint

from aios.models.families import CheckpointError, load_pretrained
from aios.runtime.block_decoding import decode_blocks

MASK = 69  # the last of 70 tokens: MDLM appends [MASK] to the tokenizer's vocabulary
TOKENS = torch.randint(0, 69, (2, 11), generator=torch.Generator().manual_seed(3))


def close(ours, expected):
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def weights():
    return mdlm_weights()


@pytest.fixture(scope="module")
def mdlm(tmp_path_factory, weights):
    return load_pretrained(write_checkpoint(tmp_path_factory.mktemp("mdlm"), weights,
                                            MDLM_CONFIG))


@pytest.mark.parametrize(("shards", "inv_freq"), [(1, True), (3, False)])
def test_the_raw_logits_match_the_reference_dit(tmp_path, shards, inv_freq):
    weights = mdlm_weights(inv_freq=inv_freq)
    model = load_pretrained(write_checkpoint(tmp_path / "m", weights, MDLM_CONFIG, shards))
    assert model.family.name == "mdlm" and model.mask_token_id == MASK
    with torch.inference_mode():
        raw = model.network(TOKENS).logits
    close(raw, mdlm_reference_forward(weights, TOKENS))


def test_subs_never_predicts_the_mask_and_carries_unmasked_tokens_over(mdlm, weights):
    tokens = TOKENS.clone()
    tokens[:, 2:9] = MASK
    with torch.inference_mode():
        out = mdlm(tokens)
    reference = mdlm_reference_forward(weights, tokens)
    reference[..., MASK] = -torch.inf
    masked = tokens == MASK
    close(out[masked], torch.log_softmax(reference, -1)[masked])
    assert torch.isneginf(out[masked][:, MASK]).all()
    kept = out[~masked]  # one-hot log-probabilities of the observed token
    assert (kept.argmax(-1) == tokens[~masked]).all()
    assert (kept.max(-1).values == 0).all() and torch.isneginf(kept).sum() == kept.numel() - len(
        kept)


def test_a_time_conditioned_checkpoint_sees_sigma(tmp_path):
    config = {**MDLM_CONFIG, "time_conditioning": True}
    weights = mdlm_weights(config)
    model = load_pretrained(write_checkpoint(tmp_path, weights, config))
    sigma = torch.tensor([0.3, 2.0])
    tokens = TOKENS.clone()
    tokens[0, :5] = MASK  # 5 of 11 masked: sigma estimated as -log(1 - 5/11)
    with torch.inference_mode():
        close(model.network(tokens, sigma=sigma).logits,
              mdlm_reference_forward(weights, tokens, config, sigma=sigma))
        estimated = torch.tensor([-np.log(1 - 5 / 11), 0.0], dtype=torch.float32)
        close(model.network(tokens).logits,
              mdlm_reference_forward(weights, tokens, config, sigma=estimated))
        fixed = model.network(tokens, sigma=torch.tensor([1.0, 1.0])).logits
    assert not torch.allclose(fixed, model.network(tokens).logits)


def test_without_time_conditioning_sigma_changes_nothing(mdlm):
    with torch.inference_mode():
        close(mdlm(TOKENS, sigma=torch.tensor([0.5, 3.0])), mdlm(TOKENS))


def test_sigma_is_refused_for_a_family_without_noise_conditioning(tmp_path):
    from family_nets import LLAMA_CONFIG, qwen_llama_weights

    llama = load_pretrained(write_checkpoint(tmp_path, qwen_llama_weights(LLAMA_CONFIG,
                                                                          bias=False),
                                             LLAMA_CONFIG))
    with pytest.raises(ValueError, match="sigma= is an MDLM input; the llama family"):
        llama(TOKENS, sigma=torch.zeros(2))


def test_bfloat16_weights_give_nearly_the_float32_distribution(tmp_path, mdlm):
    directory = write_checkpoint(tmp_path, mdlm_weights(), MDLM_CONFIG)
    half = load_pretrained(directory, dtype="bfloat16")
    assert half.network.backbone.blocks[0].attn_qkv.weight.dtype == torch.bfloat16
    tokens = TOKENS.clone()
    tokens[:, ::3] = MASK
    with torch.inference_mode():
        ours, theirs = half(tokens).exp(), mdlm(tokens).exp()
    assert ours.dtype == torch.float32 and float((ours - theirs).abs().max()) < 0.05


def test_left_padding_gives_each_row_the_logits_it_has_alone(mdlm):
    tokens = TOKENS.clone()
    tokens[:, 1::2] = MASK
    short = tokens[1, :6]
    batch = torch.stack([tokens[0], torch.cat([torch.zeros(5, dtype=torch.long), short])])
    padding = torch.ones_like(batch)
    padding[1, :5] = 0
    with torch.inference_mode():
        together = mdlm(batch, padding=padding)
        close(together[0], mdlm(tokens[:1])[0])
        close(together[1, 5:], mdlm(short[None])[0])
    assert torch.isfinite(together[1, 5:][short == MASK]).sum() > 0


# -- generation --------------------------------------------------------------------------------


def test_block_decoding_generates_the_models_greedy_choices(mdlm):
    prompt = [5, 9, 14, 3]
    out, stats = decode_blocks(mdlm, [prompt], new_tokens=4, block_size=4, steps_per_block=4)
    assert stats.forward_calls == 4
    tokens = torch.tensor([prompt + [MASK] * 4])
    for _ in range(4):  # each step: the most confident masked position takes its argmax
        with torch.inference_mode():
            log_probs = mdlm(tokens)[0, len(prompt):]
        confidence, candidate = log_probs.max(-1)
        confidence[tokens[0, len(prompt):] != MASK] = -torch.inf
        at = int(confidence.argmax())
        tokens[0, len(prompt) + at] = candidate[at]
    assert out[0].tolist() == tokens[0, len(prompt):].tolist()


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_the_caches_are_exact_with_block_causal_attention(mdlm, cache):
    prompts = [[5, 9, 14, 3, 22], [7, 1, 30]]
    options = {"new_tokens": 8, "block_size": 4, "steps_per_block": 2,
               "attention": "block-causal"}
    plain, plain_stats = decode_blocks(mdlm, prompts, cache="none", **options)
    cached, stats = decode_blocks(mdlm, prompts, cache=cache, **options)
    assert cached.tolist() == plain.tolist() and not bool((plain == MASK).any())
    assert stats.positions < plain_stats.positions


def test_the_mdlm_sampler_generates_from_it(mdlm):
    from aios_samplers.discrete import MDLM

    from aios.protocols import MaskedState

    prompt = [5, 9, 14]
    state = MaskedState(np.array([prompt + [MASK] * 8] * 2), mask_id=MASK)

    def denoise(state, t):
        with torch.inference_mode():
            return mdlm(torch.from_numpy(state.tokens))

    out = MDLM().sample(denoise, state, num_steps=8, rng=np.random.default_rng(0))
    assert out.tokens.shape == (2, 11) and (out.tokens[:, :3] == prompt).all()
    assert not (out.tokens == MASK).any()
    again = MDLM().sample(denoise, state, num_steps=8, rng=np.random.default_rng(0))
    assert (again.tokens == out.tokens).all()


# -- bad input ---------------------------------------------------------------------------------


def test_a_missing_tensor_is_named(tmp_path, weights):
    damaged = {k: v for k, v in weights.items() if k != "backbone.blocks.1.mlp.2.bias"}
    with pytest.raises(CheckpointError, match="lacks the tensor 'backbone.blocks.1.mlp.2.bias"):
        load_pretrained(write_checkpoint(tmp_path, damaged, MDLM_CONFIG))


@pytest.mark.parametrize("name", ["backbone.blocks.0.attn_qkv.weight",
                                  "backbone.rotary_emb.inv_freq"])
def test_a_misshapen_tensor_is_named_with_its_file_and_both_shapes(tmp_path, weights, name):
    damaged = {**weights, name: torch.zeros(*[s + 1 for s in weights[name].shape])}
    expected = list(weights[name].shape)
    with pytest.raises(CheckpointError, match=rf"model.safetensors: tensor '{name}' has shape "
                                              rf".*config.json implies \[{expected[0]}"):
        load_pretrained(write_checkpoint(tmp_path, damaged, MDLM_CONFIG))


@pytest.mark.parametrize(("change", "message"), [
    ({"n_heads": None}, r"lacks \['n_heads'\]"),
    ({"hidden_dim": "48"}, "hidden_dim must be a positive integer, got '48'"),
    ({"n_heads": 5}, "hidden_dim 48 is not 5 heads of an even size"),
    ({"time_conditioning": "no"}, "time_conditioning must be true or false"),
    ({"mask_token_id": 70}, "mask_token_id 70 is not a token of the 70-entry vocabulary"),
    ({"vocab_size": 71}, r"backbone.vocab_embed.embedding' has shape \[70, 48\], but "
                         r"config.json implies \[71, 48\]"),
])
def test_a_wrong_config_is_refused_naming_the_file_and_key(tmp_path, weights, change, message):
    config = {k: v for k, v in {**MDLM_CONFIG, **change}.items() if v is not None}
    with pytest.raises(CheckpointError, match=message) as caught:
        load_pretrained(write_checkpoint(tmp_path, weights, config))
    assert "model.safetensors" in str(caught.value) or "config.json" in str(caught.value)


def test_a_converted_mdlm_keeps_its_family_and_its_log_probs(tmp_path, mdlm):
    from aios.models.families import convert_pretrained

    loaded = load_pretrained(convert_pretrained(mdlm, tmp_path / "q", bits=8, group_size=16))
    assert loaded.family.name == "mdlm" and loaded.mask_token_id == MASK
    assert loaded.source.kind == "arrowquant"
    tokens = TOKENS.clone()
    tokens[:, ::2] = MASK
    with torch.inference_mode():
        ours, theirs = loaded(tokens)[tokens == MASK], mdlm(tokens)[tokens == MASK]
    assert float((ours.exp() - theirs.exp()).abs().max()) < 0.01  # another seed: 0.26
