import numpy as np
import pytest
import torch

from aios.errors import AiosError
from aios.models.backbone import Backbone, BackboneConfig
from aios.models.model_dir import load_backbone, read_model_config, save_model_dir
from aios.quant import ReferenceQuantizer
from aios.quant.linear import QuantizedLinear


def backbone():
    torch.manual_seed(0)
    return Backbone(BackboneConfig(dim=64, depth=1, heads=2)).eval()


def test_a_backbone_round_trips_with_its_config_and_head_settings(tmp_path):
    net = backbone()
    head = torch.nn.Linear(64, 5)
    save_model_dir(tmp_path, net, {"toy": (head, {"classes": 5})})
    loaded = load_backbone(tmp_path)
    x, t = torch.randn(1, 3, 64), torch.rand(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, 0), net(x, t, 0))
    assert read_model_config(tmp_path)["heads"] == {"toy": {"classes": 5}}
    assert (tmp_path / "toy.arrow").exists()


def test_a_quantized_directory_loads_into_quantized_linears_that_agree(tmp_path):
    net = backbone()
    with torch.no_grad():  # give the zero-initialised modulation weights something to quantize
        for p in net.parameters():
            p.add_(0.02 * torch.randn(p.shape))
    save_model_dir(tmp_path, net, {}, quantizer=ReferenceQuantizer(bits=8, group_size=64))
    loaded = load_backbone(tmp_path)
    assert any(isinstance(m, QuantizedLinear) for m in loaded.modules())
    x, t = torch.randn(1, 3, 64), torch.rand(1)
    with torch.no_grad():
        a, b = loaded(x, t, 0).numpy(), net(x, t, 0).numpy()
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.999


def test_a_directory_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(AiosError, match="is not an aios model directory"):
        load_backbone(tmp_path)


def test_a_quantized_tensor_that_is_not_a_linear_weight_is_refused(tmp_path):
    from aios.errors import QuantizationError
    from aios.quant.linear import load_quantized

    module = torch.nn.Embedding(10, 64)
    quantized = ReferenceQuantizer(bits=8, group_size=64).quantize(
        np.random.default_rng(0).normal(size=(10, 64)).astype(np.float32), name="weight")
    with pytest.raises(QuantizationError, match="is not the weight of a linear layer"):
        load_quantized(module, {"weight": quantized})
