"""Side networks on the torch backbone: ControlNet-style zero-initialised branches beside frozen
blocks (level 1 of the self-evolution ladder).

ControlNet trains a copy of a network's blocks beside the frozen original and joins the two
through layers initialised to zero, so training starts from exactly the original model and
moves away only as far as the data asks. A full copy of one of our blocks is 13% of the model,
too much for a cheap adaptation, so the branch here is a bottleneck feed-forward network: it
reads the block's input (RMS-normalised) and adds `up(silu(down(x)))` to the block's output,
with `up` zero at the start. Only the last blocks get one (`blocks`), where the representation
is most specific to the output. `side_tensors` reads the branches out under the names
`backbone_numpy.ArrayBackbone` runs them by (`blocks.N.side.down.weight`, `...up.weight`).
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn


class SideBranch(nn.Module):
    """`up(silu(down(rms_norm(x))))`, `up` zero-initialised: a no-op until trained."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"a side branch needs a positive hidden size, got {hidden}")
        self.eps = eps
        self.down = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(F.silu(self.down(F.rms_norm(x, (x.shape[-1],), eps=self.eps))))


class SideBlock(nn.Module):
    """A frozen backbone block with a trainable branch from its input to its output."""

    def __init__(self, block: nn.Module, side: SideBranch) -> None:
        super().__init__()
        self.block = block
        self.side = side
        for p in block.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, *args: object) -> tuple[Tensor, Tensor, Tensor]:
        out, k, v = self.block(x, *args)
        return out + self.side(x), k, v


def add_side_branches(backbone: nn.Module, blocks: int, hidden: int) -> list[int]:
    """Give the last `blocks` blocks a side branch in place; returns their indices."""
    layers = getattr(backbone, "blocks", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError("the module has no `blocks` list to add side branches to")
    if not 1 <= blocks <= len(layers):
        raise ValueError(f"blocks must be in 1..{len(layers)} (the backbone's depth), "
                         f"got {blocks}")
    config = backbone.config
    chosen = list(range(len(layers) - blocks, len(layers)))
    for index in chosen:
        layers[index] = SideBlock(layers[index], SideBranch(config.dim, hidden, config.norm_eps))
    return chosen


def side_tensors(backbone: nn.Module) -> dict[str, np.ndarray]:
    """The weights of every side branch, named `blocks.N.side.{down,up}.weight`."""
    return {f"{name}.side.{part}.weight":
            getattr(module.side, part).weight.detach().float().numpy().copy()
            for name, module in backbone.named_modules() if isinstance(module, SideBlock)
            for part in ("down", "up")}
