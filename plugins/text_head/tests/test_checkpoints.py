"""A tiny LLaDA-style checkpoint, written in that layout, loads into aios and computes the same
logits as an independent implementation of the LLaDA forward pass."""

import json

import pytest
import torch
import torch.nn.functional as F
from aios_text.checkpoints import CheckpointError, load_llada
from safetensors.torch import save_file

CONFIG = {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "vocab_size": 60,
          "mask_token_id": 59, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
          "max_sequence_length": 128, "weight_tying": False, "include_bias": False}
HIDDEN = 48


def random_weights(seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return scale * torch.randn(*shape, generator=g)

    d, v = CONFIG["d_model"], CONFIG["vocab_size"]
    w = {"model.transformer.wte.weight": r(v, d, scale=1.0),
         "model.transformer.ln_f.weight": 1 + r(d),
         "model.transformer.ff_out.weight": r(v, d)}
    for i in range(CONFIG["n_layers"]):
        b = f"model.transformer.blocks.{i}."
        w |= {b + "q_proj.weight": r(d, d), b + "k_proj.weight": r(d, d),
              b + "v_proj.weight": r(d, d), b + "attn_out.weight": r(d, d),
              b + "ff_proj.weight": r(HIDDEN, d), b + "up_proj.weight": r(HIDDEN, d),
              b + "ff_out.weight": r(d, HIDDEN), b + "attn_norm.weight": 1 + r(d),
              b + "ff_norm.weight": 1 + r(d)}
    return w


def reference_llada(w, tokens):
    """LLaDA's forward pass written out plainly: RMSNorm with weights, rotary, bidirectional
    attention, SwiGLU, an untied output layer."""
    d, h = CONFIG["d_model"], CONFIG["n_heads"]
    hd = d // h

    def norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CONFIG["rms_norm_eps"]) * weight

    def rope(x):
        n = x.shape[-2]
        inv = 1.0 / CONFIG["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)
        freqs = torch.outer(torch.arange(n).float(), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * emb.cos() + rotated * emb.sin()

    x = w["model.transformer.wte.weight"][tokens]
    b, n, _ = x.shape
    for i in range(CONFIG["n_layers"]):
        p = f"model.transformer.blocks.{i}."
        y = norm(x, w[p + "attn_norm.weight"])
        q, k, v = (F.linear(y, w[p + f"{c}_proj.weight"]).view(b, n, h, hd).transpose(1, 2)
                   for c in "qkv")
        att = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / hd**0.5, dim=-1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(b, n, d), w[p + "attn_out.weight"])
        y = norm(x, w[p + "ff_norm.weight"])
        gated = F.silu(F.linear(y, w[p + "ff_proj.weight"])) * F.linear(y, w[p + "up_proj.weight"])
        x = x + F.linear(gated, w[p + "ff_out.weight"])
    return F.linear(norm(x, w["model.transformer.ln_f.weight"]),
                    w["model.transformer.ff_out.weight"])


def write_checkpoint(directory, weights, config=CONFIG, shards=1):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    names = sorted(weights)
    if shards == 1:
        save_file(weights, directory / "model.safetensors")
        return directory
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: weights[n] for n in part}, directory / file)
        weight_map |= dict.fromkeys(part, file)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


@pytest.mark.parametrize("shards", [1, 3])
def test_a_llada_checkpoint_gives_the_logits_of_the_reference_forward_pass(tmp_path, shards):
    weights = random_weights()
    model, config = load_llada(write_checkpoint(tmp_path / "ckpt", weights, shards=shards))
    tokens = torch.randint(0, 59, (2, 11), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = model(tokens, torch.rand(2))
        expected = reference_llada(weights, tokens)
    keep = torch.arange(60) != 59  # aios never predicts the mask token
    torch.testing.assert_close(ours[..., keep], expected[..., keep], atol=2e-4, rtol=2e-4)
    assert config["mask_token_id"] == model.head.mask_id == 59


def test_grouped_query_attention_loads_as_repeated_key_value_heads(tmp_path):
    weights = random_weights()
    g = torch.Generator().manual_seed(9)
    for i in range(CONFIG["n_layers"]):  # 2 key/value heads of 8 channels for 4 query heads
        for p in "kv":
            weights[f"model.transformer.blocks.{i}.{p}_proj.weight"] = 0.2 * torch.randn(
                16, 32, generator=g)
    model, _ = load_llada(write_checkpoint(tmp_path / "ckpt", weights,
                                           {**CONFIG, "n_kv_heads": 2}))
    full = dict(weights)
    for i in range(CONFIG["n_layers"]):  # the same model written as multi-head attention
        for p in "kv":
            name = f"model.transformer.blocks.{i}.{p}_proj.weight"
            full[name] = weights[name].view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32)
    tokens = torch.randint(0, 59, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens, torch.rand(2))
        expected = reference_llada(full, tokens)
    keep = torch.arange(60) != 59
    torch.testing.assert_close(ours[..., keep], expected[..., keep], atol=2e-4, rtol=2e-4)


def test_a_missing_tensor_is_named(tmp_path):
    weights = random_weights()
    del weights["model.transformer.blocks.1.up_proj.weight"]
    with pytest.raises(CheckpointError, match="lacks the tensor 'model.transformer.blocks.1.up_"):
        load_llada(write_checkpoint(tmp_path / "ckpt", weights))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_kv_heads": 3}, "n_heads 4 is not a multiple of n_kv_heads 3"),
        ({"include_bias": True}, "`include_bias: true` is not supported"),
    ],
)
def test_unsupported_architectures_are_refused_clearly(tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_llada(write_checkpoint(tmp_path / "ckpt", random_weights(), {**CONFIG, **change}))


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_llada(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(CheckpointError, match="holds no .safetensors files"):
        load_llada(tmp_path)
