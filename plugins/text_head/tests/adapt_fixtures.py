"""A tiny random Llama in the exact `transformers` layout, for the adaptation tests."""

import torch
from aios_text.adapt.model import BlockDiffusionLM

VOCAB = 48
MASK = 5


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         attn_implementation="sdpa")
    network = LlamaForCausalLM(config).eval()
    return network


def tiny_adapted(seed: int = 0, lora_rank: int = 4) -> BlockDiffusionLM:
    model = BlockDiffusionLM(tiny_llama(seed), MASK, lora_rank=lora_rank, lora_alpha=8.0)
    with torch.no_grad():  # LoRA B starts at zero; make the adaptation do something
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.2)
    return model.eval()
