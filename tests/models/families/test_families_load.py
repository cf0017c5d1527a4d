"""Each family loads from tiny random weights in its exact published names and shapes and
computes the logits of an independent plain-torch forward pass (float32, within 1e-4)."""

import pytest
import torch
from family_nets import (
    DREAM_CONFIG,
    LLADA_CONFIG,
    LLAMA_CONFIG,
    hf_dims,
    hf_names,
    llada_dims,
    llada_names,
    llada_weights,
    qwen_llama_weights,
    reference_forward,
    write_checkpoint,
)

from aios.models.families import CheckpointError, load_pretrained

TOKENS = torch.randint(0, 68, (2, 13), generator=torch.Generator().manual_seed(5))


def close(ours, expected):
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shards", [1, 3])
def test_llada_with_grouped_query_attention_matches_the_reference(tmp_path, shards):
    weights = llada_weights()
    model = load_pretrained(write_checkpoint(tmp_path / "llada", weights, LLADA_CONFIG, shards))
    assert model.family.name == "llada" and model.mask_token_id == 69
    assert model.config.num_key_value_heads == 2
    with torch.inference_mode():
        ours = model(TOKENS)
    close(ours, reference_forward(weights, TOKENS, names=llada_names, dims=llada_dims()))


def test_dream_is_bidirectional_with_biases_and_its_logits_shifted_by_one(tmp_path):
    weights = qwen_llama_weights(DREAM_CONFIG, bias=True)
    model = load_pretrained(write_checkpoint(tmp_path / "dream", weights, DREAM_CONFIG))
    assert model.family.name == "dream" and model.mask_token_id == 68
    with torch.inference_mode():
        ours = model(TOKENS)
    raw = reference_forward(weights, TOKENS, names=hf_names, dims=hf_dims(DREAM_CONFIG))
    close(ours[:, 1:], raw[:, :-1])
    close(ours[:, 0], raw[:, 0])


def test_a_llama_ar_model_is_causal_with_tied_embeddings(tmp_path):
    weights = qwen_llama_weights(LLAMA_CONFIG, bias=False)
    assert "lm_head.weight" not in weights
    model = load_pretrained(write_checkpoint(tmp_path / "llama", weights, LLAMA_CONFIG, 2))
    assert model.family.name == "llama" and model.mask_token_id is None
    dims = hf_dims(LLAMA_CONFIG)
    with torch.inference_mode():
        close(model(TOKENS), reference_forward(weights, TOKENS, names=hf_names, dims=dims,
                                               pattern="causal"))
        close(model(TOKENS, attention="block-causal", block_size=4),
              reference_forward(weights, TOKENS, names=hf_names, dims=dims,
                                pattern="block-causal", block=4))
        close(model(TOKENS, attention="bidirectional"),
              reference_forward(weights, TOKENS, names=hf_names, dims=dims))


def test_the_llama_path_agrees_with_transformers_own_loader(tmp_path):
    from transformers import AutoModelForCausalLM

    weights = qwen_llama_weights(LLAMA_CONFIG, bias=False)
    directory = write_checkpoint(tmp_path / "llama", weights, LLAMA_CONFIG)
    theirs = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.inference_mode():
        close(load_pretrained(directory)(TOKENS), theirs(TOKENS).logits)


def test_left_padding_gives_each_row_the_logits_it_has_alone(tmp_path):
    weights = qwen_llama_weights(LLAMA_CONFIG, bias=False)
    model = load_pretrained(write_checkpoint(tmp_path / "llama", weights, LLAMA_CONFIG))
    short = TOKENS[1, :7]
    batch = torch.stack([TOKENS[0], torch.cat([torch.zeros(6, dtype=torch.long), short])])
    padding = torch.ones_like(batch)
    padding[1, :6] = 0
    with torch.inference_mode():
        together = model(batch, padding=padding)
        close(together[0], model(TOKENS[:1])[0])
        close(together[1, 6:], model(short[None])[0])


# -- bad input -------------------------------------------------------------------------------


def test_a_missing_tensor_is_named(tmp_path):
    weights = llada_weights()
    del weights["model.transformer.blocks.1.up_proj.weight"]
    with pytest.raises(CheckpointError, match="lacks the tensor 'model.transformer.blocks.1.up"):
        load_pretrained(write_checkpoint(tmp_path / "c", weights, LLADA_CONFIG))


def test_a_misshapen_tensor_is_named_with_both_shapes(tmp_path):
    weights = qwen_llama_weights(DREAM_CONFIG, bias=True)
    weights["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(24, 48)
    with pytest.raises(CheckpointError, match=r"k_proj.weight' has shape \[24, 48\], but "
                                              r"config.json implies \[16, 48\]"):
        load_pretrained(write_checkpoint(tmp_path / "c", weights, DREAM_CONFIG))


def test_an_unknown_architecture_is_refused_with_the_known_ones(tmp_path):
    config = {**LLAMA_CONFIG, "model_type": "mamba", "architectures": ["MambaForCausalLM"]}
    directory = write_checkpoint(tmp_path / "c", qwen_llama_weights(LLAMA_CONFIG, bias=False),
                                 config)
    with pytest.raises(CheckpointError, match="unknown architecture .*'mamba'.*dream, llada"):
        load_pretrained(directory)


def test_a_directory_without_config_or_weights_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_pretrained(tmp_path)
    write_checkpoint(tmp_path, {}, LLAMA_CONFIG).joinpath("model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no .safetensors files"):
        load_pretrained(tmp_path)


def test_a_missing_shard_is_named(tmp_path):
    directory = write_checkpoint(tmp_path / "c", llada_weights(), LLADA_CONFIG, shards=2)
    (directory / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lists model-00002-of-00002.safetensors, which is"):
        load_pretrained(directory)
