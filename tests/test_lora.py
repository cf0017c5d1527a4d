import numpy as np
import pytest
import torch
from backbone_nets import backbone_inputs, perturbed_backbone

from aios.evolve.adapters import Adapter, AdapterInfo, merge_lora
from aios.models.backbone import BackboneConfig
from aios.models.backbone_numpy import ArrayBackbone
from aios.models.lora import LoRALinear, add_lora, lora_tensors

CONFIG = BackboneConfig(dim=16, depth=2, heads=2, max_len=32)


def backbone(seed=0):
    return perturbed_backbone(CONFIG, seed)


def inputs():
    return backbone_inputs(CONFIG)


def test_every_attention_and_feed_forward_projection_is_wrapped():
    wrapped = add_lora(backbone(), rank=2, alpha=4.0)
    assert sorted(wrapped) == sorted(f"blocks.{i}.{layer}" for i in range(2)
                                     for layer in ("attn.qkv", "attn.out", "ffn.gate_up",
                                                   "ffn.down"))


def test_a_fresh_lora_model_computes_what_the_base_computes():
    base, adapted = backbone(), backbone()
    add_lora(adapted, rank=2, alpha=4.0)
    x, t = inputs()
    torch.testing.assert_close(adapted(x, t, 0), base(x, t, 0))


def test_only_the_lora_factors_are_trainable():
    net = backbone()
    add_lora(net, rank=2, alpha=4.0)
    wrapped = [m for m in net.modules() if isinstance(m, LoRALinear)]
    assert all(not p.requires_grad for m in wrapped for p in m.base.parameters())
    assert all(m.lora_a.requires_grad and m.lora_b.requires_grad for m in wrapped)


def test_the_numpy_backbone_with_merged_factors_matches_the_torch_lora_model():
    net = backbone()
    base_weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    add_lora(net, rank=2, alpha=4.0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(0, 0.2)
    tensors = lora_tensors(net)
    info = AdapterInfo("t", "lora", 2, "m", sum(v.size for v in tensors.values()),
                       {"rank": 2, "alpha": 4.0})
    merged = merge_lora(base_weights, Adapter(info, tensors))
    x, t = inputs()
    with torch.no_grad():
        expected = net(x, t, 0).numpy()
    got = ArrayBackbone(CONFIG, merged)(x.numpy(), t.numpy(), 0)
    assert np.abs(expected - backbone()(x, t, 0).detach().numpy()).max() > 1e-2  # it changed
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_module_without_target_layers_is_refused():
    with pytest.raises(ValueError, match="none of the LoRA target layers"):
        add_lora(torch.nn.Linear(3, 3), rank=2, alpha=1.0)
