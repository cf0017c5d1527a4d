"""Absorbing-state masked diffusion for text: the forward process and the MDLM training loss.

At time t in [0, 1] each token is independently replaced by the mask token with probability
1 - alpha(t), where alpha is the masking schedule (alpha(0) = 1: clean, alpha(1) = 0: all masked).
The model predicts the clean token at masked positions; the continuous-time negative ELBO
weights the cross-entropy at time t by -alpha'(t) / (1 - alpha(t)) (1/t for the linear schedule),
which makes the loss an upper bound on the negative log-likelihood per token (MDLM, Sahoo et al.
2024). Its exponential is a perplexity bound comparable with an autoregressive model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: alpha(t): the share of tokens still clean at time t, vectorised over a NumPy array.
Alpha = Callable[[np.ndarray], Any]

#: Times are drawn from [T_MIN, 1]: the weight -alpha'/(1-alpha) diverges at t = 0.
T_MIN = 1e-3


def loss_weight(alpha: Alpha, t: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """-alpha'(t) / (1 - alpha(t)) by central differences, so any schedule (even a table) works."""
    t = np.asarray(t, dtype=np.float64)
    lo, hi = np.clip(t - h, 0.0, 1.0), np.clip(t + h, 0.0, 1.0)
    derivative = (np.asarray(alpha(hi), np.float64) - np.asarray(alpha(lo), np.float64)) / (hi - lo)
    return -derivative / np.maximum(1.0 - np.asarray(alpha(t), np.float64), 1e-12)


def sample_times(batch: int, generator: torch.Generator) -> Tensor:
    """Stratified times in [T_MIN, 1]: one per sequence, evenly spread (lower loss variance)."""
    offset = torch.rand((), generator=generator)
    u = (offset + torch.arange(batch) / batch) % 1.0
    return T_MIN + (1.0 - T_MIN) * u[torch.randperm(batch, generator=generator)]


def mask_tokens(
    tokens: Tensor, t: Tensor, alpha: Alpha, mask_id: int, generator: torch.Generator,
    maskable: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Apply the forward process at time `t` (one per row): returns (noisy tokens, masked)."""
    keep = torch.as_tensor(np.asarray(alpha(t.double().numpy())), dtype=torch.float32)
    masked = torch.rand(tokens.shape, generator=generator) >= keep[:, None]
    if maskable is not None:
        masked &= maskable
    return torch.where(masked, torch.full_like(tokens, mask_id), tokens), masked


def mdlm_loss(model: torch.nn.Module, tokens: Tensor, alpha: Alpha, mask_id: int,
              generator: torch.Generator, *, maskable: Tensor | None = None,
              padding_mask: Tensor | None = None) -> Tensor:
    """The negative ELBO per (maskable) token, in nats, as a Monte-Carlo estimate over t."""
    if maskable is None:
        maskable = torch.ones_like(tokens, dtype=torch.bool)
    if padding_mask is not None:
        maskable = maskable & padding_mask
    t = sample_times(tokens.shape[0], generator)
    noisy, masked = mask_tokens(tokens, t, alpha, mask_id, generator, maskable)
    logits = model(noisy, t, padding_mask=padding_mask)
    nll = F.cross_entropy(logits.transpose(1, 2).float(), tokens, reduction="none")
    weight = torch.as_tensor(loss_weight(alpha, t.double().numpy()), dtype=torch.float32)
    per_token = (nll * masked) * weight[:, None]
    return per_token.sum() / maskable.sum().clamp(min=1)
