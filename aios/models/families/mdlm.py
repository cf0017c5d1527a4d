"""MDLM (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"): the DiT
denoiser of the published checkpoints (`kuleshov-group/mdlm-owt` and kin), written once here
because `transformers` has no class for it.

The network, as published (tensor names under ``backbone.``, shapes for hidden size D, vocabulary
V, conditioning size C, heads H):

- ``vocab_embed.embedding`` (V, D): the token embedding (a bare parameter, no ``.weight``).
- ``sigma_map.mlp.{0,2}`` (256 -> C -> C, with biases): the noise level sigma, embedded by
  sinusoids (256 frequencies, cos first, then sin) and an MLP with SiLU; the conditioning
  vector is ``c = silu(sigma_map(sigma))``. A checkpoint trained without time conditioning
  (``time_conditioning: false``, mdlm-owt) always gets sigma = 0, so c is a constant.
- ``blocks.N``: pre-norm transformer blocks with adaLN modulation. ``adaLN_modulation``
  (C -> 6D) gives shift/scale/gate for attention and for the MLP; ``norm1``/``norm2`` are
  LayerNorms with a weight and no bias (eps 1e-5); ``attn_qkv`` (D -> 3D, no bias, q|k|v each
  heads-major) with rotary embeddings (rotate-half, base 10,000, the full head dimension) on q
  and k, bidirectional scaled-dot-product attention, ``attn_out`` (D -> D, no bias); the MLP is
  ``mlp.0`` (D -> 4D) + tanh-GELU + ``mlp.2`` (4D -> D), both with biases. Residuals are
  gated: ``x + gate * branch``.
- ``output_layer``: ``norm_final`` (LayerNorm), ``adaLN_modulation`` (C -> 2D: shift, scale),
  ``linear`` (D -> V, with bias).
- ``rotary_emb.inv_freq`` (head_dim / 2): a buffer the published code saves; it is computed from
  the config here, and accepted (checked by shape) when the files carry it.

The network returns raw logits; `PretrainedModel` applies MDLM's SUBS parameterization
(`subs_log_probs`). The tokenizer is GPT-2's, and the mask token is the vocabulary's last entry
(50,257 = GPT-2's 50,257 tokens + [MASK]) unless config.json names ``mask_token_id``.

Everything the block decoder needs is here too: 4-D boolean attention masks (padding,
block-causal), position ids (left padding), and a key/value cache with the
`transformers` cache duck type (`aios.runtime.kv_cache.BlockKVCache`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aios.models.families.errors import CheckpointError

#: Sinusoidal frequencies of the noise-level embedding (fixed in the published code).
FREQUENCY_SIZE = 256
#: The smallest masked fraction's complement when estimating sigma (MDLM's sampling epsilon).
SIGMA_EPS = 1e-3
_REQUIRED = ("vocab_size", "hidden_dim", "cond_dim", "n_blocks", "n_heads")


@dataclass(frozen=True)
class MDLMConfig:
    """The settings of a published MDLM `config.json` that shape the network."""

    vocab_size: int
    hidden_dim: int
    cond_dim: int
    n_blocks: int
    n_heads: int
    model_length: int = 1024
    time_conditioning: bool = False
    mask_token_id: int | None = None
    mlp_ratio: int = 4
    model_type: str = "mdlm"

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.n_heads

    @property
    def mask_id(self) -> int:
        """MDLM appends [MASK] after the tokenizer's vocabulary."""
        return self.vocab_size - 1 if self.mask_token_id is None else self.mask_token_id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_published(cls, config: dict[str, Any], source: Path | str) -> MDLMConfig:
        """Validated settings of `config` (a parsed config.json); mistakes name the key."""
        missing = [k for k in _REQUIRED if k not in config]
        if missing:
            raise CheckpointError(f"{source}: lacks {missing}, which an MDLM config.json has; "
                                  "use the config.json that came with the weights")
        values: dict[str, Any] = {}
        for key in (*_REQUIRED, "model_length"):
            if key not in config:
                continue
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{source}: {key} must be a positive integer, got "
                                      f"{value!r}; restore the config.json of the weights")
            values[key] = value
        time_conditioning = config.get("time_conditioning", False)
        if not isinstance(time_conditioning, bool):
            raise CheckpointError(f"{source}: time_conditioning must be true or false, got "
                                  f"{time_conditioning!r}")
        if values["hidden_dim"] % values["n_heads"] or (
                values["hidden_dim"] // values["n_heads"]) % 2:
            raise CheckpointError(f"{source}: hidden_dim {values['hidden_dim']} is not "
                                  f"{values['n_heads']} heads of an even size (rotary "
                                  "embeddings rotate pairs); the config is damaged")
        mask = config.get("mask_token_id")
        if mask is not None and not (isinstance(mask, int) and 0 <= mask < values["vocab_size"]):
            raise CheckpointError(f"{source}: mask_token_id {mask!r} is not a token of the "
                                  f"{values['vocab_size']}-entry vocabulary")
        return cls(**values, time_conditioning=time_conditioning, mask_token_id=mask)


# -- the layers ------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32 as the published one is."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x.float(), (x.shape[-1],))
        return (normed * self.weight.float()).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x (B, T, D) * (1 + scale) + shift``, with shift/scale ``(B, D)`` per sequence."""
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """sigma ``(B,)`` -> ``(B, C)``: sinusoids of 256 frequencies, then Linear-SiLU-Linear."""

    def __init__(self, cond_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_SIZE, cond_dim), nn.SiLU(),
                                 nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = FREQUENCY_SIZE // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device) / half)
        angles = sigma.float()[:, None] * freqs[None]  # (B, 128)
        features = torch.cat([angles.cos(), angles.sin()], dim=-1)  # (B, 256)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half layout) at given positions."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``(B, 1, T, head_dim)`` for positions ``(B, T)``."""
        freqs = positions.float()[..., None] * self.inv_freq  # (B, T, hd/2)
        angles = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, T, hd)
        return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    turned = torch.cat([-second, first], dim=-1)
    return (x.float() * cos + turned.float() * sin).to(x.dtype)


class DiTBlock(nn.Module):
    """One adaLN transformer block: gated attention, then a gated MLP."""

    def __init__(self, config: MDLMConfig, index: int) -> None:
        super().__init__()
        dim, self.heads, self.index = config.hidden_dim, config.n_heads, index
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, config.mlp_ratio * dim),
                                 nn.GELU(approximate="tanh"),
                                 nn.Linear(config.mlp_ratio * dim, dim))
        self.adaLN_modulation = nn.Linear(config.cond_dim, 6 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None, cache: Any) -> torch.Tensor:
        b, t, d = x.shape
        (shift_attn, scale_attn, gate_attn,
         shift_mlp, scale_mlp, gate_mlp) = self.adaLN_modulation(c).chunk(6, dim=-1)  # 6 x (B, D)
        qkv = self.attn_qkv(modulate(self.norm1(x), shift_attn, scale_attn))  # (B, T, 3D)
        q, k, v = qkv.view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, *rotary), _rotate(k, *rotary)  # (B, H, T, hd)
        if cache is not None:  # cached positions' keys and values come first
            k, v = cache.update(k, v, self.index)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hd)
        x = x + gate_attn[:, None] * self.attn_out(att.transpose(1, 2).reshape(b, t, d))
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and the output projection to the vocabulary."""

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__()
        self.norm_final = LayerNorm(config.hidden_dim)
        self.linear = nn.Linear(config.hidden_dim, config.vocab_size)
        self.adaLN_modulation = nn.Linear(config.cond_dim, 2 * config.hidden_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # 2 x (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, T, V)


class EmbeddingLayer(nn.Module):
    """The token embedding as the published bare parameter ``embedding`` (V, D)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class DiT(nn.Module):
    """The published `DITBackbone`: embedding, conditioning, blocks, final layer."""

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__()
        self.vocab_embed = EmbeddingLayer(config.vocab_size, config.hidden_dim)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.rotary_emb = Rotary(config.head_dim)
        self.blocks = nn.ModuleList(DiTBlock(config, i) for i in range(config.n_blocks))
        self.output_layer = FinalLayer(config)


@dataclass
class MDLMOutput:
    """What the network returns, shaped like a `transformers` output (``.logits``)."""

    logits: torch.Tensor
    past_key_values: Any = None


class MDLMNetwork(nn.Module):
    """``forward(input_ids, ...)`` -> raw logits ``(B, T, V)``, with the calling convention of
    the `transformers` networks (4-D boolean mask, position ids, a key/value cache), so the
    pretrained-model wrapper and the block decoder run it unchanged."""

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = DiT(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        sigma: torch.Tensor | None = None,
    ) -> MDLMOutput:
        """`attention_mask` ``(B, 1, T, keys)`` bool (True = may attend; None = every
        position sees every other); `past_key_values` a cache with ``update(k, v, layer)``
        and ``get_seq_length()`` (`use_cache` only says whether to return it); `sigma`
        ``(B,)`` the noise level, used only by a time-conditioned checkpoint (when None,
        estimated from the masked fraction)."""
        b, t = input_ids.shape
        net = self.backbone
        cached = 0 if past_key_values is None else past_key_values.get_seq_length()
        if position_ids is None:
            position_ids = torch.arange(cached, cached + t, device=input_ids.device).expand(b, t)
        x = net.vocab_embed(input_ids)  # (B, T, D)
        c = F.silu(net.sigma_map(self.noise_level(input_ids, sigma)))  # (B, C)
        rotary = net.rotary_emb(position_ids)
        for block in net.blocks:  # a given cache is always used, as in transformers
            x = block(x, c, rotary, attention_mask, past_key_values)
        return MDLMOutput(net.output_layer(x, c), past_key_values if use_cache else None)

    def noise_level(self, input_ids: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """The sigma the conditioning sees: 0 without time conditioning (as published); else
        the given one, or ``-log(1 - masked fraction)`` (the total noise at which a position
        is masked with that probability, whatever the schedule), capped at ``-log(eps)``."""
        b = input_ids.shape[0]
        zeros = torch.zeros(b, device=input_ids.device)
        if not self.config.time_conditioning:
            return zeros
        if sigma is not None:
            return sigma.float().reshape(-1).expand(b) if sigma.numel() == 1 else sigma.float()
        masked = (input_ids == self.config.mask_id).float().mean(dim=-1)
        return -torch.log1p(-masked.clamp(max=1 - SIGMA_EPS))


def subs_log_probs(logits: torch.Tensor, input_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """MDLM's SUBS parameterization as log-probabilities ``(B, T, V)``: at a masked position,
    the log-softmax of the logits with the mask token at -inf (the clean token is never the
    mask); at an unmasked position, the observed token with probability 1 (log 0, every other
    token -inf): a revealed token is carried over unchanged."""
    logits = logits.float().clone()
    logits[..., mask_id] = -torch.inf
    log_probs = torch.log_softmax(logits, dim=-1)
    carried = torch.full_like(log_probs, -torch.inf)
    carried.scatter_(-1, input_ids[..., None], 0.0)
    return torch.where((input_ids != mask_id)[..., None], carried, log_probs)


def expected_shapes(config: MDLMConfig) -> dict[str, tuple[int, ...]]:
    """Every published tensor name and shape of `config`, without allocating the network."""
    with torch.device("meta"):
        network = MDLMNetwork(config)
    return {n: tuple(p.shape) for n, p in network.state_dict().items()}


#: Saved by the published code, computed here from the config (checked by shape when present).
OPTIONAL_BUFFERS = ("backbone.rotary_emb.inv_freq",)


def load_network(published: dict[str, Any], tensors: Any, source: Path,
                 dtype: torch.dtype = torch.float32) -> MDLMNetwork:
    """The network of a published config.json (`published`) holding the tensors of `tensors`
    (`hf_directory.TensorFiles`), every name and shape checked before any weight is read."""
    config = MDLMConfig.from_published(published, source)
    expected = expected_shapes(config)
    optional = {name: (config.head_dim // 2,) for name in OPTIONAL_BUFFERS}
    tensors.check({**expected, **optional}, set(optional))
    return assemble_network(config, {name: tensors.get(name).to(dtype) for name in expected})


def assemble_network(config: MDLMConfig, state: dict[str, torch.Tensor]) -> MDLMNetwork:
    """The network of `config` holding the tensors of `state` themselves (no copy: memory-
    mapped or dequantized tensors become the parameters)."""
    with torch.device("meta"):
        network = MDLMNetwork(config)
    network.load_state_dict(state, strict=True, assign=True)
    network.backbone.rotary_emb = Rotary(config.head_dim)  # the meta buffer, recomputed
    return network.requires_grad_(False).eval()


__all__ = ["FREQUENCY_SIZE", "OPTIONAL_BUFFERS", "MDLMConfig", "MDLMNetwork", "MDLMOutput",
           "assemble_network", "expected_shapes", "load_network", "subs_log_probs"]
