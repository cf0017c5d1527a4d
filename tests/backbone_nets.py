"""Small perturbed backbones and inputs for the adapter tests (LoRA, side networks)."""

import torch

from aios.models.backbone import Backbone, BackboneConfig


def perturbed_backbone(config: BackboneConfig, seed: int = 0) -> Backbone:
    """A backbone whose blocks all do something (adaLN-Zero starts every block as identity)."""
    torch.manual_seed(seed)
    net = Backbone(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def backbone_inputs(config: BackboneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences of 8 vectors and their diffusion times."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 8, config.dim, generator=g), torch.tensor([0.3, 0.7])
