"""A tiny Llama GGUF written with the `gguf` package as llama.cpp's converter writes one
(Q and K rows permuted for its rotary layout, GPT-2-style BPE vocabulary)."""

import numpy as np
from family_nets import LLAMA_CONFIG, qwen_llama_weights


def _permute(w, heads):
    """llama.cpp's row order for Q/K: each head's two rotary halves interleaved."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def write_tiny_llama_gguf(path, seed=0):
    import gguf

    c = LLAMA_CONFIG
    weights = qwen_llama_weights(c, bias=False, seed=seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c["max_position_embeddings"])
    writer.add_embedding_length(c["hidden_size"])
    writer.add_block_count(c["num_hidden_layers"])
    writer.add_feed_forward_length(c["intermediate_size"])
    writer.add_head_count(c["num_attention_heads"])
    writer.add_head_count_kv(c["num_key_value_heads"])
    writer.add_rope_dimension_count(c["hidden_size"] // c["num_attention_heads"])
    writer.add_rope_freq_base(c["rope_theta"])
    writer.add_layer_norm_rms_eps(c["rms_norm_eps"])
    writer.add_vocab_size(c["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    tokens = [chr(ord("a") + i % 26) * (1 + i // 26) for i in range(c["vocab_size"])]
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_merges([])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"].numpy())
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"].numpy())
    for i in range(c["num_hidden_layers"]):
        for ours, theirs in names.items():
            w = weights[f"model.layers.{i}.{ours}.weight"].numpy()
            if theirs == "attn_q":
                w = _permute(w, c["num_attention_heads"])
            if theirs == "attn_k":
                w = _permute(w, c["num_key_value_heads"])
            writer.add_tensor(f"blk.{i}.{theirs}.weight", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights
