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


WORDS = [f"w{i}" for i in range(VOCAB)]


def tiny_tokenizer():
    """A word-level `tokenizers` tokenizer over `WORDS` (id i is the word `w{i}`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="w1"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return tokenizer


def tiny_materialized(directory, seed: int = 0):
    """A runnable adapted-model directory (as `shipping.materialize` writes) of the tiny model."""
    from aios_text.adapt.shipping import merged_network

    from aios.models import FAMILIES, PretrainedModel, convert_pretrained

    model = tiny_adapted(seed)
    network = merged_network(model)
    pretrained = PretrainedModel(network, FAMILIES["llama"], tokenizer=tiny_tokenizer(),
                                 mask_token_id=MASK)
    convert_pretrained(pretrained, directory, bits=8)
    return directory
