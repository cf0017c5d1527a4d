"""LoRA on the torch backbone: trainable low-rank updates beside frozen projections.

`add_lora` wraps every attention and feed-forward projection (`LORA_TARGETS`) in a
`LoRALinear`; only the factors train. B starts at zero, so a freshly wrapped model computes
exactly what the base model computes, and training moves it away only as far as the data asks.
`lora_tensors` reads the factors back out under the names `aios.evolve.adapters.merge_lora` expects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from aios.evolve import LORA_TARGETS


class LoRALinear(nn.Module):
    """`base(x) + alpha / rank * B(A(x))` with `base` frozen."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * ((x @ self.lora_a.T) @ self.lora_b.T)


def add_lora(backbone: nn.Module, rank: int, alpha: float) -> list[str]:
    """Wrap the target projections of every block in place; returns the wrapped layer names."""
    wrapped = []
    for name, module in list(backbone.named_modules()):
        for target in LORA_TARGETS:
            parent_name, _, attribute = target.rpartition(".")
            layer = getattr(module, attribute, None)
            if name.rpartition(".")[2] == parent_name and isinstance(layer, nn.Linear):
                setattr(module, attribute, LoRALinear(layer, rank, alpha))
                wrapped.append(f"{name}.{attribute}")
    if not wrapped:
        raise ValueError("the module has none of the LoRA target layers "
                         f"{', '.join(LORA_TARGETS)}")
    return wrapped


def lora_tensors(backbone: nn.Module) -> dict[str, np.ndarray]:
    """The factors of every `LoRALinear`, named `LAYER.lora_a` / `LAYER.lora_b`."""
    return {f"{name}.{part}": getattr(module, part).detach().float().numpy().copy()
            for name, module in backbone.named_modules() if isinstance(module, LoRALinear)
            for part in ("lora_a", "lora_b")}
