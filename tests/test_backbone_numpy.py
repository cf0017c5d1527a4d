"""The NumPy inference backbone computes what the torch backbone computes."""

import numpy as np
import pytest
import torch

from aios.errors import AiosError
from aios.models.backbone import Backbone, BackboneConfig
from aios.models.backbone_numpy import ArrayBackbone
from aios.models.model_dir import load_backbone, save_model_dir
from aios.quant import ReferenceQuantizer
from aios.quant.linear import set_activations


def random_backbone(**sizes) -> Backbone:
    """A backbone whose zero-initialised parts (adaLN, cross-attention out) are random too."""
    torch.manual_seed(0)
    net = Backbone(BackboneConfig(**{"dim": 32, "depth": 2, "heads": 4, "max_len": 40,
                                     **sizes})).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return net


def arrays_of(net: Backbone) -> ArrayBackbone:
    return ArrayBackbone(net.config, {k: v.numpy() for k, v in net.state_dict().items()})


def test_outputs_agree_with_padding_and_one_time_per_row():
    net = random_backbone()
    x, t = torch.randn(3, 9, 32), torch.rand(3)
    padding = torch.ones(3, 9, dtype=torch.bool)
    padding[1, :4] = False
    with torch.no_grad():
        expected = net(x, t, 1, padding_mask=padding).numpy()
    got = arrays_of(net)(x.numpy(), t.numpy(), 1, padding_mask=padding.numpy())
    real = padding.numpy()
    np.testing.assert_allclose(got[real], expected[real], atol=1e-4)


def test_an_attention_mask_and_a_key_value_cache_agree():
    net = random_backbone()
    x, t = torch.randn(2, 10, 32), torch.rand(2)
    causal = torch.tril(torch.ones(1, 10, 10, dtype=torch.bool))
    with torch.no_grad():
        expected = net(x, t, 0, attention_mask=causal).numpy()
    arrays = arrays_of(net)
    np.testing.assert_allclose(arrays(x.numpy(), t.numpy(), 0, attention_mask=causal.numpy()),
                               expected, atol=1e-4)
    # A prefix of 6 cached, the rest computed after it (block-causal, like the torch cache).
    block = torch.ones(1, 10, 10, dtype=torch.bool)
    block[:, :6, 6:] = False
    with torch.no_grad():
        blockwise = net(x, t, 0, attention_mask=block).numpy()
    _, cache = arrays(x[:, :6].numpy(), t.numpy(), 0, return_cache=True)
    rest = arrays(x[:, 6:].numpy(), t.numpy(), 0, past=cache)
    np.testing.assert_allclose(rest, blockwise[:, 6:], atol=1e-4)
    assert cache.length == 6 and cache.rows(np.array([1])).keys[0].shape[0] == 1


def test_cross_attention_to_condition_vectors_agrees():
    net = random_backbone(cond_dim=12)
    x, t = torch.randn(2, 5, 32), torch.rand(2)
    cond, keep = torch.randn(2, 3, 12), torch.tensor([[True, True, False], [True, False, False]])
    with torch.no_grad():
        expected = net(x, t, 2, cond=cond, cond_mask=keep).numpy()
        unconditioned = net(x, t, 2).numpy()
    arrays = arrays_of(net)
    np.testing.assert_allclose(arrays(x.numpy(), t.numpy(), 2, cond=cond.numpy(),
                                      cond_mask=keep.numpy()), expected, atol=1e-4)
    np.testing.assert_allclose(arrays(x.numpy(), t.numpy(), 2), unconditioned, atol=1e-4)


def test_an_int8_model_directory_loads_like_the_torch_loader(tmp_path):
    net = random_backbone()
    save_model_dir(tmp_path, net, {}, quantizer=ReferenceQuantizer(bits=8, group_size=32))
    x, t = torch.randn(1, 7, 32), torch.rand(1)
    with torch.no_grad():  # the exact weight-only path: the NumPy backbone keeps inputs float
        expected = set_activations(load_backbone(tmp_path), "float")(x, t, 0).numpy()
    got = ArrayBackbone.load(tmp_path)(x.numpy(), t.numpy(), 0)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_weights_of_another_configuration_are_refused():
    net = random_backbone()
    weights = {k: v.numpy() for k, v in net.state_dict().items()}
    with pytest.raises(AiosError, match="lack"):
        ArrayBackbone(BackboneConfig(dim=32, depth=3, heads=4), weights)
    with pytest.raises(ValueError, match="exceed max_len 40"):
        arrays_of(net)(np.zeros((1, 41, 32), np.float32), np.zeros(1), 0)
