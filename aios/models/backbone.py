"""The shared denoising transformer: one network for every modality.

A head turns its data into a sequence of vectors and reads predictions off the output vectors;
the backbone only ever sees vectors, a diffusion time and a modality id. It is bidirectional (every
position sees every other, as a denoiser must), with RMSNorm, rotary positions and SwiGLU feed-
forward layers as in LLaDA-style masked diffusion models, and adaLN-Zero modulation (DiT) that
injects the time and modality into every block. Optional cross-attention reads condition vectors
(retrieved memories), and a key/value cache lets semi-autoregressive decoding reuse the fixed
prefix and finished blocks instead of recomputing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aios.models.backbone_config import (
    BackboneConfig,  # re-exported: `from aios.models.backbone import BackboneConfig`
)


@dataclass
class KVCache:
    """Per-layer keys and values of positions already processed (prefix, finished blocks)."""

    keys: list[Tensor]
    values: list[Tensor]
    padding_mask: Tensor  # (batch, length) bool, True for real positions

    @property
    def length(self) -> int:
        return self.padding_mask.shape[1]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of a diffusion time in [0, 1] (scaled to [0, 1000] like DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotary position embedding on (batch, heads, length, head_dim), half-split layout."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs[None]  # (length, half)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.base = config.rope_base
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor,
                past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, positions, self.base), rotate(k, positions, self.base)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d)), k, v


class CrossAttention(nn.Module):
    """Reads condition vectors; a learned null slot means 'no condition' and keeps rows finite."""

    def __init__(self, config: BackboneConfig, cond_dim: int) -> None:
        super().__init__()
        self.heads = config.heads
        self.norm = nn.RMSNorm(config.dim, eps=config.norm_eps)
        self.q = nn.Linear(config.dim, config.dim, bias=False)
        self.kv = nn.Linear(cond_dim, 2 * config.dim, bias=False)
        self.null = nn.Parameter(torch.zeros(1, 1, cond_dim))
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        nn.init.zeros_(self.out.weight)  # a new memory pathway starts as a no-op

    def forward(self, x: Tensor, cond: Tensor | None, cond_mask: Tensor | None) -> Tensor:
        b, n, d = x.shape
        null = self.null.expand(b, 1, -1).to(x.dtype)
        cond = null if cond is None else torch.cat([null, cond.to(x.dtype)], dim=1)
        m = cond.shape[1]
        keep = torch.ones(b, m, dtype=torch.bool, device=x.device)
        if cond_mask is not None and m > 1:
            keep[:, 1:] = cond_mask
        h = d // self.heads
        q = self.q(self.norm(x)).view(b, n, self.heads, h).transpose(1, 2)
        k, v = self.kv(cond).view(b, m, 2, self.heads, h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(config.dim, eps=config.norm_eps, elementwise_affine=False)
        self.attn = SelfAttention(config)
        self.norm2 = nn.RMSNorm(config.dim, eps=config.norm_eps, elementwise_affine=False)
        self.ffn = SwiGLU(config.dim, config.hidden_ffn)
        self.cross = CrossAttention(config, config.cond_dim) if config.cond_dim else None
        # adaLN-Zero: shift, scale and gate per sublayer, zeroed so a block starts as identity
        self.modulation = nn.Linear(config.dim, 6 * config.dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor, positions: Tensor, mask: Tensor,
                past: tuple[Tensor, Tensor] | None, cond: Tensor | None,
                cond_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        h, k, v = self.attn(self.norm1(x) * (1 + scale1) + shift1, positions, mask, past)
        x = x + gate1 * h
        if self.cross is not None:
            x = x + self.cross(x, cond, cond_mask)
        x = x + gate2 * self.ffn(self.norm2(x) * (1 + scale2) + shift2)
        return x, k, v


class Backbone(nn.Module):
    """Bidirectional transformer denoiser over vector sequences, conditioned on time and modality.

    `forward(x, t, modality)` maps (batch, length, dim) inputs to outputs of the same shape.
    Heads own everything modality-specific on either side of it.
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.time = nn.Sequential(nn.Linear(config.dim, config.dim), nn.SiLU(),
                                  nn.Linear(config.dim, config.dim))
        self.modality = nn.Embedding(config.modalities, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.RMSNorm(config.dim, eps=config.norm_eps, elementwise_affine=False)
        self.final_modulation = nn.Linear(config.dim, 2 * config.dim)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        modality: Tensor | int,
        *,
        padding_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cond: Tensor | None = None,
        cond_mask: Tensor | None = None,
        past: KVCache | None = None,
        return_cache: bool = False,
    ) -> Tensor | tuple[Tensor, KVCache]:
        """Denoise one chunk of positions.

        - `x` (batch, length, dim); `t` (batch,) diffusion time in [0, 1]; `modality` an int
          or (batch,).
        - `padding_mask` (batch, length) bool, True for real positions; padded keys are ignored.
        - `attention_mask` (batch or 1, length, past + length) bool, True where a query may look;
          e.g. block-causal masks for semi-autoregressive training. Default: everything visible.
        - `cond` (batch, slots, cond_dim) condition vectors with `cond_mask` (batch, slots).
        - `past`: a cache of earlier positions; this chunk is placed after them and attends to
          them. With `return_cache=True` the cache extended by this chunk is returned too.
        """
        b, n, d = self._check(x, t, padding_mask, cond, past)
        device = x.device
        if padding_mask is None:
            padding_mask = torch.ones(b, n, dtype=torch.bool, device=device)
        offset = 0 if past is None else past.length
        positions = torch.arange(offset, offset + n, device=device)
        keys_visible = padding_mask if past is None else torch.cat([past.padding_mask,
                                                                    padding_mask], dim=1)
        mask = keys_visible[:, None, None, :]
        if attention_mask is not None:
            mask = mask & attention_mask.to(torch.bool)[:, None]
        if isinstance(modality, int):
            modality = torch.full((b,), modality, dtype=torch.long, device=device)
        c = self.time(timestep_embedding(t.to(device), d).to(x.dtype)) + self.modality(modality)
        c = F.silu(c)
        keys, values = [], []
        for index, block in enumerate(self.blocks):
            layer_past = None if past is None else (past.keys[index], past.values[index])
            x, k, v = block(x, c, positions, mask, layer_past, cond, cond_mask)
            keys.append(k)
            values.append(v)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=-1)
        out = self.final_norm(x) * (1 + scale) + shift
        if return_cache:
            return out, KVCache(keys, values, keys_visible)
        return out

    def _check(self, x: Tensor, t: Tensor, padding_mask: Tensor | None, cond: Tensor | None,
               past: KVCache | None) -> tuple[int, int, int]:
        if x.dim() != 3 or x.shape[-1] != self.config.dim:
            raise ValueError(f"x must be (batch, length, {self.config.dim}), got {tuple(x.shape)}")
        b, n, d = x.shape
        if t.shape != (b,):
            raise ValueError(f"t must be ({b},) (one time per sequence), got {tuple(t.shape)}")
        if padding_mask is not None and padding_mask.shape != (b, n):
            raise ValueError(f"padding_mask must be ({b}, {n}), got {tuple(padding_mask.shape)}")
        total = n + (0 if past is None else past.length)
        if total > self.config.max_len:
            raise ValueError(f"{total} positions exceed max_len {self.config.max_len}; "
                             "shorten the input or build the backbone with a larger max_len")
        if cond is not None:
            if self.config.cond_dim is None:
                raise ValueError("this backbone has no cross-attention (cond_dim is None); "
                                 "build it with cond_dim set to pass conditions")
            if cond.dim() != 3 or cond.shape[0] != b or cond.shape[2] != self.config.cond_dim:
                raise ValueError(f"cond must be ({b}, slots, {self.config.cond_dim}), "
                                 f"got {tuple(cond.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        return b, n, d

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
