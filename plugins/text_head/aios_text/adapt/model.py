"""The adapted model: a pretrained AR network (`transformers` Llama) that denoises a block.

One module holds what adaptation adds to the base network and nothing else:
- a learned mask embedding (the base vocabulary has no mask token; a reserved id stands for
  it in token ids, and its input vector is this parameter instead of the base row),
- LoRA factors on every attention and feed-forward projection (`aios.models.LoRALinear`), or
  none when the whole network is fine-tuned.

Attention in training (`training_mask`), over the concatenation ``[clean | noisy_1 | ...]`` of
one clean copy of a window and its noisy copies, all with the same position ids (BD3-LM's
vectorised form, Arriola et al. 2025):
- a clean position sees clean positions up to itself (causal: the AR model as it was);
- a noisy position in block b sees the clean positions of blocks before b and the positions of
  its own copy in block b (bidirectional inside the block); copies never see each other.
So one forward trains every block of every copy at once, exactly as decoding later runs them:
a finished prefix (cached keys and values, causal) and the current block of masks.

Logits shift (kept from the AR model, as Dream and Fast-dLLM v2 do): the token at position i is
predicted by the hidden state at i - 1: inside a block from the noisy copy, and for a block's
first position from the clean copy's last position before it, which is the AR model's own
next-token prediction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from aios.models import LoRALinear

#: The projections of a Llama block that get LoRA factors.
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class BlockDiffusionLM(nn.Module):
    """`network` (a `transformers` causal LM) with a mask embedding and optional LoRA."""

    def __init__(self, network: nn.Module, mask_token_id: int, *, lora_rank: int = 0,
                 lora_alpha: float = 32.0) -> None:
        super().__init__()
        self.network = network
        self.mask_token_id = int(mask_token_id)
        embeddings = network.get_input_embeddings().weight
        # start from the average input vector: a "some token" the network already handles
        self.mask_embedding = nn.Parameter(embeddings.detach().float().mean(0).clone())
        self.lora_rank = lora_rank
        if lora_rank:
            network.requires_grad_(False)
            add_llama_lora(network, lora_rank, lora_alpha)
        else:
            network.requires_grad_(True)

    @classmethod
    def from_merged(cls, network: nn.Module, mask_token_id: int) -> BlockDiffusionLM:
        """A merged network (LoRA folded in, the mask embedding in its vocabulary row, as
        `aios_text.adapt.shipping` writes it), for inference."""
        model = cls(network, mask_token_id)
        with torch.no_grad():
            row = network.get_input_embeddings().weight[mask_token_id]
            model.mask_embedding.copy_(row.float())
        return model.requires_grad_(False).eval()

    @property
    def config(self) -> Any:
        return self.network.config

    # -- what block decoding needs (`aios_text.adapt.decode.BlockModel`) ------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.network.get_input_embeddings().weight.shape[0])

    def asarray(self, host: Any) -> Tensor:
        return torch.as_tensor(host, device=self.mask_embedding.device)

    def inference(self) -> torch.inference_mode:
        return torch.inference_mode()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def embed(self, ids: Tensor) -> Tensor:
        """Input vectors of `ids`, the mask id mapped to the learned mask embedding."""
        vectors = self.network.get_input_embeddings()(ids)
        is_mask = (ids == self.mask_token_id)[..., None]
        return torch.where(is_mask, self.mask_embedding.to(vectors.dtype), vectors)

    def hidden(self, ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
               cache: Any = None) -> Tensor:
        """Last hidden states ``(batch, length, dim)`` (the output layer is applied only where
        a loss or a token needs it: it is a fifth of the network's work). `cache` is a
        key/value cache in the duck type of `aios.runtime.BlockKVCache`."""
        extra = {} if cache is None else {self._cache_keyword(): cache, "use_cache": True}
        out = self.network.model(inputs_embeds=self.embed(ids), attention_mask=attention_mask,
                                 position_ids=position_ids, **extra)
        return out.last_hidden_state

    def _cache_keyword(self) -> str:
        # transformers 5 renamed `past_key_values` to `cache`; use what this version declares
        import inspect

        params = inspect.signature(self.network.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def logits(self, hidden: Tensor) -> Tensor:
        return self.network.lm_head(hidden)

    def adaptation_state(self) -> dict[str, Tensor]:
        """What adaptation changed: the mask embedding and the LoRA factors (with LoRA), or
        every tensor (full fine-tuning)."""
        return {n: p.detach() for n, p in self.named_parameters()
                if not self.lora_rank or n == "mask_embedding" or ".lora_" in n}


def add_llama_lora(network: nn.Module, rank: int, alpha: float) -> list[str]:
    """Wrap every `LLAMA_PROJECTIONS` linear of `network` in a `LoRALinear`, in place."""
    wrapped = []
    for name, module in list(network.named_modules()):
        for attribute in LLAMA_PROJECTIONS:
            layer = getattr(module, attribute, None)
            if isinstance(layer, nn.Linear):
                setattr(module, attribute, LoRALinear(layer, rank, alpha))
                wrapped.append(f"{name}.{attribute}")
    if not wrapped:
        raise ValueError(f"the network has none of the projections {LLAMA_PROJECTIONS}")
    return wrapped


@torch.no_grad()
def merge_llama_lora(network: nn.Module) -> int:
    """Fold every `LoRALinear` back into a plain `nn.Linear` (W + scale * B A), in place;
    returns how many were merged. The merged network computes what the wrapped one did."""
    merged = 0
    for module in list(network.modules()):
        for attribute in LLAMA_PROJECTIONS:
            layer = getattr(module, attribute, None)
            if isinstance(layer, LoRALinear):
                base = layer.base
                delta = layer.scale * (layer.lora_b.float() @ layer.lora_a.float())
                base.weight.copy_((base.weight.float() + delta).to(base.weight.dtype))
                setattr(module, attribute, base)
                merged += 1
    return merged


def block_ids(length: int, block_size: int, device: Any = None) -> Tensor:
    return torch.arange(length, device=device) // block_size


def training_mask(length: int, block_size: int, copies: int, device: Any = None, *,
                  start: int = 0) -> Tensor:
    """The ``(1, 1, n, n)`` boolean mask over ``[clean | noisy_1 .. noisy_copies]``; True =
    may attend (see the module docstring). The noisy copies cover positions ``start ..
    length`` of the window (all of it by default; memory training masks only the answer at the
    end, `aios_text.adapt.memory`), so n = ``length + copies * (length - start)``."""
    pos = torch.arange(length, device=device)
    blk = pos // block_size
    noisy = blk[start:]
    span = length - start
    n = length + copies * span
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[:length, :length] = pos[None, :] <= pos[:, None]  # causal
    for c in range(copies):
        rows = slice(length + c * span, length + (c + 1) * span)
        mask[rows, :length] = blk[None, :] < noisy[:, None]  # clean blocks before its own
        mask[rows, rows] = noisy[None, :] == noisy[:, None]  # its own block, both ways
    return mask[None, None]


__all__ = ["LLAMA_PROJECTIONS", "BlockDiffusionLM", "add_llama_lora", "block_ids",
           "merge_llama_lora", "training_mask"]
