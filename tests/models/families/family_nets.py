"""Tiny random checkpoints in the published layouts, and a plain-torch forward pass written
independently of `transformers`, to check the family loaders against."""

import json

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

LLADA_CONFIG = {"d_model": 48, "n_layers": 2, "n_heads": 6, "n_kv_heads": 2, "vocab_size": 70,
                "embedding_size": 70, "mlp_hidden_size": 40, "mask_token_id": 69,
                "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_sequence_length": 128,
                "weight_tying": False, "include_bias": False, "model_type": "llada",
                "architectures": ["LLaDAModelLM"]}
DREAM_CONFIG = {"architectures": ["DreamModel"], "model_type": "Dream", "hidden_size": 48,
                "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 6,
                "num_key_value_heads": 2, "vocab_size": 70, "rms_norm_eps": 1e-6,
                "rope_theta": 1000000.0, "max_position_embeddings": 128,
                "tie_word_embeddings": False, "mask_token_id": 68, "hidden_act": "silu"}
LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 48,
                "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 6,
                "num_key_value_heads": 2, "vocab_size": 70, "rms_norm_eps": 1e-5,
                "rope_theta": 100000.0, "max_position_embeddings": 128,
                "tie_word_embeddings": True, "hidden_act": "silu"}


def _rand(g):
    def r(*shape, scale=0.2):
        return scale * torch.randn(*shape, generator=g)
    return r


def llada_weights(config=LLADA_CONFIG, seed=0):
    r = _rand(torch.Generator().manual_seed(seed))
    d, v, f = config["d_model"], config["vocab_size"], config["mlp_hidden_size"]
    kv = d // config["n_heads"] * config["n_kv_heads"]
    w = {"model.transformer.wte.weight": r(v, d, scale=1.0),
         "model.transformer.ln_f.weight": 1 + r(d), "model.transformer.ff_out.weight": r(v, d)}
    for i in range(config["n_layers"]):
        b = f"model.transformer.blocks.{i}."
        w |= {b + "q_proj.weight": r(d, d), b + "k_proj.weight": r(kv, d),
              b + "v_proj.weight": r(kv, d), b + "attn_out.weight": r(d, d),
              b + "ff_proj.weight": r(f, d), b + "up_proj.weight": r(f, d),
              b + "ff_out.weight": r(d, f), b + "attn_norm.weight": 1 + r(d),
              b + "ff_norm.weight": 1 + r(d)}
    return w


def qwen_llama_weights(config, *, bias, seed=0):
    """Tensors with the names and shapes of the Qwen2 (bias=True) or Llama layout."""
    r = _rand(torch.Generator().manual_seed(seed))
    d, v, f = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    kv = d // config["num_attention_heads"] * config["num_key_value_heads"]
    w = {"model.embed_tokens.weight": r(v, d, scale=1.0), "model.norm.weight": 1 + r(d)}
    if not config["tie_word_embeddings"]:
        w["lm_head.weight"] = r(v, d)
    for i in range(config["num_hidden_layers"]):
        b = f"model.layers.{i}."
        w |= {b + "self_attn.q_proj.weight": r(d, d), b + "self_attn.k_proj.weight": r(kv, d),
              b + "self_attn.v_proj.weight": r(kv, d), b + "self_attn.o_proj.weight": r(d, d),
              b + "mlp.gate_proj.weight": r(f, d), b + "mlp.up_proj.weight": r(f, d),
              b + "mlp.down_proj.weight": r(d, f), b + "input_layernorm.weight": 1 + r(d),
              b + "post_attention_layernorm.weight": 1 + r(d)}
        if bias:
            w |= {b + "self_attn.q_proj.bias": r(d), b + "self_attn.k_proj.bias": r(kv),
                  b + "self_attn.v_proj.bias": r(kv)}
    return w


def write_checkpoint(directory, weights, config, shards=1):
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


def reference_forward(w, tokens, *, names, dims, pattern="bidirectional", block=None):
    """A Llama/Qwen2-style forward pass written out plainly: RMSNorm, rotary (rotate-half),
    grouped-query attention with the given mask pattern, SwiGLU. `names(i, part)` gives a
    tensor's published name; `dims` = (d, heads, kv_heads, layers, eps, theta)."""
    d, h, kvh, layers, eps, theta = dims
    hd = d // h

    def norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def rope(x):
        n = x.shape[-2]
        inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
        freqs = torch.outer(torch.arange(n).float(), inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()

    def lin(x, name):
        bias = w.get(name.replace(".weight", ".bias")) if name.endswith(".weight") else None
        return F.linear(x, w[name], bias)

    x = w[names(None, "embed")][tokens]
    b, n, _ = x.shape
    i_pos, j_pos = torch.arange(n)[:, None], torch.arange(n)[None, :]
    allowed = {"bidirectional": torch.ones(n, n, dtype=torch.bool), "causal": j_pos <= i_pos,
               "block-causal": (j_pos // (block or 1)) <= (i_pos // (block or 1))}[pattern]
    for i in range(layers):
        y = norm(x, w[names(i, "attn_norm")])
        q = lin(y, names(i, "q")).view(b, n, h, hd).transpose(1, 2)
        k = lin(y, names(i, "k")).view(b, n, kvh, hd).transpose(1, 2)
        v = lin(y, names(i, "v")).view(b, n, kvh, hd).transpose(1, 2)
        k, v = k.repeat_interleave(h // kvh, dim=1), v.repeat_interleave(h // kvh, dim=1)
        scores = rope(q) @ rope(k).transpose(-1, -2) / hd**0.5
        att = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v
        x = x + lin(att.transpose(1, 2).reshape(b, n, d), names(i, "o"))
        y = norm(x, w[names(i, "ffn_norm")])
        x = x + lin(F.silu(lin(y, names(i, "gate"))) * lin(y, names(i, "up")), names(i, "down"))
    out = names(None, "out") if names(None, "out") in w else names(None, "embed")
    return F.linear(norm(x, w[names(None, "norm")]), w[out])


def llada_names(i, part):
    if i is None:
        return {"embed": "model.transformer.wte.weight", "norm": "model.transformer.ln_f.weight",
                "out": "model.transformer.ff_out.weight"}[part]
    short = {"attn_norm": "attn_norm", "q": "q_proj", "k": "k_proj", "v": "v_proj",
             "o": "attn_out", "ffn_norm": "ff_norm", "gate": "ff_proj", "up": "up_proj",
             "down": "ff_out"}[part]
    return f"model.transformer.blocks.{i}.{short}.weight"


def hf_names(i, part):
    if i is None:
        return {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight",
                "out": "lm_head.weight"}[part]
    long = {"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
            "v": "self_attn.v_proj", "o": "self_attn.o_proj",
            "ffn_norm": "post_attention_layernorm", "gate": "mlp.gate_proj",
            "up": "mlp.up_proj", "down": "mlp.down_proj"}[part]
    return f"model.layers.{i}.{long}.weight"


def llada_dims(c=LLADA_CONFIG):
    return (c["d_model"], c["n_heads"], c["n_kv_heads"], c["n_layers"], c["rms_norm_eps"],
            c["rope_theta"])


def hf_dims(c):
    return (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
            c["num_hidden_layers"], c["rms_norm_eps"], c["rope_theta"])


# -- MDLM (the published DiT layout of kuleshov-group/mdlm-owt, names under `backbone.`) -------

MDLM_CONFIG = {"architectures": ["MDLM"], "model_type": "mdlm", "vocab_size": 70,
               "hidden_dim": 48, "cond_dim": 24, "n_blocks": 2, "n_heads": 4,
               "model_length": 64, "dropout": 0.1, "time_conditioning": False,
               "return_dict": False, "torch_dtype": "float32"}


def mdlm_weights(config=MDLM_CONFIG, seed=0, inv_freq=True):
    """Every tensor of the published MDLM checkpoint, random (the adaLN layers too: the
    published initialisation zeroes them, which would hide every mistake in them)."""
    r = _rand(torch.Generator().manual_seed(seed))
    d, c, v = config["hidden_dim"], config["cond_dim"], config["vocab_size"]
    w = {"backbone.vocab_embed.embedding": r(v, d, scale=1.0),
         "backbone.sigma_map.mlp.0.weight": r(c, 256), "backbone.sigma_map.mlp.0.bias": r(c),
         "backbone.sigma_map.mlp.2.weight": r(c, c), "backbone.sigma_map.mlp.2.bias": r(c),
         "backbone.output_layer.norm_final.weight": 1 + r(d),
         "backbone.output_layer.linear.weight": r(v, d),
         "backbone.output_layer.linear.bias": r(v),
         "backbone.output_layer.adaLN_modulation.weight": r(2 * d, c),
         "backbone.output_layer.adaLN_modulation.bias": r(2 * d)}
    for i in range(config["n_blocks"]):
        b = f"backbone.blocks.{i}."
        w |= {b + "norm1.weight": 1 + r(d), b + "attn_qkv.weight": r(3 * d, d),
              b + "attn_out.weight": r(d, d), b + "norm2.weight": 1 + r(d),
              b + "mlp.0.weight": r(4 * d, d), b + "mlp.0.bias": r(4 * d),
              b + "mlp.2.weight": r(d, 4 * d), b + "mlp.2.bias": r(d),
              b + "adaLN_modulation.weight": r(6 * d, c), b + "adaLN_modulation.bias": r(6 * d)}
    if inv_freq:
        hd = d // config["n_heads"]
        w["backbone.rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)
    return w


def mdlm_reference_forward(w, tokens, config=MDLM_CONFIG, sigma=None):
    """The MDLM DiT written out another way: the sinusoid table built per frequency, LayerNorm
    from its mean and variance, rotary embeddings as complex multiplication, attention as an
    explicit softmax per head, the tanh-GELU from its formula. Raw logits."""
    d, h = config["hidden_dim"], config["n_heads"]
    hd = d // h
    b, n = tokens.shape
    if sigma is None or not config["time_conditioning"]:
        sigma = torch.zeros(b)

    def lin(x, name, bias=True):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if bias else y

    def layer_norm(x, weight):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * weight

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))

    def silu(x):
        return x / (1 + torch.exp(-x))

    # noise-level conditioning: 128 cosines then 128 sines of sigma * 10000^(-k/128)
    k = torch.arange(128, dtype=torch.float64)
    angle = sigma.double()[:, None] * torch.pow(10000.0, -k / 128)[None]
    emb = torch.cat([torch.cos(angle), torch.sin(angle)], -1).float()
    cond = silu(lin(silu(lin(emb, "backbone.sigma_map.mlp.0")), "backbone.sigma_map.mlp.2"))

    # rotary: pair (j, j + hd/2) as the complex number x_j + i x_{j+hd/2}, turned by pos * f_j
    freq = torch.pow(10000.0, -torch.arange(0, hd, 2).double() / hd)
    turn = torch.polar(torch.ones(n, hd // 2, dtype=torch.float64),
                       torch.arange(n).double()[:, None] * freq[None])

    def rope(x):  # (b, n, h, hd)
        z = torch.complex(x[..., : hd // 2].double(), x[..., hd // 2:].double())
        z = z * turn[None, :, None, :]
        return torch.cat([z.real, z.imag], -1).float()

    x = w["backbone.vocab_embed.embedding"][tokens]
    for i in range(config["n_blocks"]):
        p = f"backbone.blocks.{i}."
        mod = lin(cond, p + "adaLN_modulation")
        s1, c1, g1, s2, c2, g2 = (mod[:, j * d:(j + 1) * d][:, None] for j in range(6))
        y = layer_norm(x, w[p + "norm1.weight"]) * (1 + c1) + s1
        qkv = lin(y, p + "attn_qkv", bias=False)
        q = rope(qkv[..., :d].reshape(b, n, h, hd))
        key = rope(qkv[..., d:2 * d].reshape(b, n, h, hd))
        v = qkv[..., 2 * d:].reshape(b, n, h, hd)
        heads = []
        for head in range(h):
            scores = q[:, :, head] @ key[:, :, head].transpose(1, 2) / hd**0.5
            weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
            heads.append((weights / weights.sum(-1, keepdim=True)) @ v[:, :, head])
        att = torch.cat(heads, -1)
        x = x + g1 * lin(att, p + "attn_out", bias=False)
        y = layer_norm(x, w[p + "norm2.weight"]) * (1 + c2) + s2
        x = x + g2 * lin(gelu(lin(y, p + "mlp.0")), p + "mlp.2")
    mod = lin(cond, "backbone.output_layer.adaLN_modulation")
    shift, scale = mod[:, None, :d], mod[:, None, d:]
    y = layer_norm(x, w["backbone.output_layer.norm_final.weight"]) * (1 + scale) + shift
    return lin(y, "backbone.output_layer.linear")
