import numpy as np
import pytest
import torch
from backbone_nets import backbone_inputs, perturbed_backbone

from aios.errors import AiosError
from aios.evolve.adapters import Adapter, AdapterInfo, apply_adapter
from aios.models.backbone import BackboneConfig
from aios.models.backbone_numpy import ArrayBackbone
from aios.models.sidenet import SideBlock, add_side_branches, side_tensors

CONFIG = BackboneConfig(dim=16, depth=3, heads=2, max_len=32)


def backbone(seed=0):
    return perturbed_backbone(CONFIG, seed)


def inputs():
    return backbone_inputs(CONFIG)


def trained_side_net(blocks=2, hidden=12):
    """(base weights, the side-branched torch net with non-zero branches)."""
    net = backbone()
    base_weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    add_side_branches(net, blocks=blocks, hidden=hidden)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SideBlock):
                m.side.up.weight.normal_(0, 0.3)
    return base_weights, net


def side_adapter(tensors):
    info = AdapterInfo("s", "sidenet", 1, "m", sum(v.size for v in tensors.values()),
                       {"blocks": 2, "hidden": 12})
    return Adapter(info, tensors)


def test_the_last_blocks_get_branches_of_the_asked_size():
    net = backbone()
    assert add_side_branches(net, blocks=2, hidden=12) == [1, 2]
    tensors = side_tensors(net)
    assert sorted(tensors) == [f"blocks.{i}.side.{p}.weight" for i in (1, 2)
                               for p in ("down", "up")]
    assert tensors["blocks.1.side.down.weight"].shape == (12, 16)
    assert tensors["blocks.1.side.up.weight"].shape == (16, 12)
    assert sum(v.size for v in tensors.values()) == 2 * 2 * 12 * 16


def test_a_fresh_side_network_computes_what_the_base_computes():
    base, adapted = backbone(), backbone()
    add_side_branches(adapted, blocks=3, hidden=8)
    x, t = inputs()
    torch.testing.assert_close(adapted(x, t, 0), base(x, t, 0))


def test_the_wrapped_block_is_frozen_and_its_branch_gets_gradients():
    net = backbone()
    add_side_branches(net, blocks=1, hidden=8)
    assert all(not p.requires_grad for n, p in net.named_parameters()
               if n.startswith("blocks.2.block."))
    assert all(p.requires_grad for p in net.blocks[2].side.parameters())
    x, t = inputs()
    net(x, t, 0).square().sum().backward()
    # the output layer starts at zero but gets a gradient; the input layer only after it moves
    assert net.blocks[2].side.up.weight.grad.abs().sum() > 0


def test_the_numpy_backbone_runs_the_branches_like_torch():
    base_weights, net = trained_side_net()
    x, t = inputs()
    with torch.no_grad():
        expected = net(x, t, 0).numpy()
        plain = backbone()(x, t, 0).numpy()
    weights = apply_adapter(base_weights, side_adapter(side_tensors(net)))
    got = ArrayBackbone(CONFIG, weights)(x.numpy(), t.numpy(), 0)
    assert np.abs(expected - plain).max() > 1e-2  # the branches change the output
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_scale_zero_turns_the_branches_off():
    base_weights, net = trained_side_net()
    x, t = inputs()
    off = ArrayBackbone(CONFIG, apply_adapter(base_weights, side_adapter(side_tensors(net)),
                                              scale=0.0))
    np.testing.assert_allclose(off(x.numpy(), t.numpy(), 0),
                               ArrayBackbone(CONFIG, base_weights)(x.numpy(), t.numpy(), 0),
                               atol=1e-6)


def test_branches_that_do_not_fit_the_backbone_are_refused():
    base_weights, net = trained_side_net()
    tensors = side_tensors(net)
    tensors["blocks.7.side.down.weight"] = tensors.pop("blocks.2.side.down.weight")
    tensors["blocks.7.side.up.weight"] = tensors.pop("blocks.2.side.up.weight")
    with pytest.raises(AiosError, match="side branch of block 7 .* does not fit"):
        ArrayBackbone(CONFIG, apply_adapter(base_weights, side_adapter(tensors)))
    with pytest.raises(AiosError, match="not a side branch weight"):
        apply_adapter(base_weights, side_adapter({"blocks.0.attn.out.weight": np.ones(2)}))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match=r"blocks must be in 1\.\.3"):
        add_side_branches(backbone(), blocks=4, hidden=8)
    with pytest.raises(ValueError, match="positive hidden size"):
        add_side_branches(backbone(), blocks=1, hidden=0)
    with pytest.raises(ValueError, match="no `blocks` list"):
        add_side_branches(torch.nn.Linear(3, 3), blocks=1, hidden=4)


def test_an_unknown_adapter_kind_cannot_be_applied():
    adapter = Adapter(AdapterInfo("x", "prefix", 3, "m", 1), {})
    with pytest.raises(AiosError, match="kind 'prefix', which generation cannot apply"):
        apply_adapter({}, adapter)
