import pytest
import torch

from aios.models.backbone import Backbone, BackboneConfig, rotate

torch.manual_seed(0)


def model(**overrides) -> Backbone:
    """A small backbone with its zero-initialised (identity) layers given random weights, so every
    pathway visibly affects the output."""
    config = BackboneConfig(**{"dim": 32, "depth": 2, "heads": 4, "max_len": 64, **overrides})
    net = Backbone(config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return net.eval()


def inputs(b=2, n=10, d=32, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g), torch.rand(b, generator=g)


def test_the_output_has_the_shape_of_the_input():
    x, t = inputs()
    assert model()(x, t, 0).shape == x.shape


def test_every_position_sees_every_other_position():
    net = model()
    x, t = inputs()
    changed = x.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(net(x, t, 0)[:, 0], net(changed, t, 0)[:, 0])


def test_padded_positions_do_not_affect_real_ones():
    net = model()
    x, t = inputs(b=1, n=6)
    padded = torch.cat([x, torch.randn(1, 4, 32)], dim=1)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    torch.testing.assert_close(net(padded, t, 0, padding_mask=mask)[:, :6], net(x, t, 0))


def test_each_sequence_of_a_batch_is_denoised_independently():
    net = model()
    x, t = inputs(b=3)
    together = net(x, t, torch.tensor([0, 1, 2]))
    for i in range(3):
        torch.testing.assert_close(together[i:i + 1], net(x[i:i + 1], t[i:i + 1], i))


def test_time_and_modality_change_the_output():
    net = model()
    x, t = inputs()
    base = net(x, t, 0)
    assert not torch.allclose(base, net(x, t + 0.3, 0))
    assert not torch.allclose(base, net(x, t, 1))


def test_a_fresh_backbone_starts_as_a_normalised_identity_of_its_input():
    net = Backbone(BackboneConfig(dim=32, depth=2, heads=4))
    x, t = inputs()
    torch.testing.assert_close(net(x, t, 0), torch.nn.functional.rms_norm(x, (32,), eps=1e-6))


def test_the_cache_reproduces_a_block_causal_forward_exactly():
    net = model()
    x, t = inputs(b=2, n=12)
    prefix, block = x[:, :8], x[:, 8:]
    causal = torch.ones(12, 12, dtype=torch.bool)
    causal[:8, 8:] = False  # the prefix does not look at the block
    full = net(x, t, 0, attention_mask=causal[None])
    prefix_out, cache = net(prefix, t, 0, return_cache=True)
    block_out, extended = net(block, t, 0, past=cache, return_cache=True)
    torch.testing.assert_close(prefix_out, full[:, :8])
    torch.testing.assert_close(block_out, full[:, 8:])
    assert extended.length == 12 and len(extended.keys) == 2


def test_rotary_attention_depends_only_on_relative_positions():
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        return (rotate(q, torch.tensor([i]), 10000.0) * rotate(k, torch.tensor([j]), 10000.0)).sum()

    torch.testing.assert_close(score(3, 7), score(13, 17))
    assert not torch.isclose(score(3, 7), score(3, 8))


def test_conditions_are_read_by_cross_attention_and_masked_slots_are_ignored():
    net = model(cond_dim=16)
    x, t = inputs()
    cond = torch.randn(2, 3, 16)
    none = net(x, t, 0)
    assert not torch.allclose(none, net(x, t, 0, cond=cond))
    all_masked = torch.zeros(2, 3, dtype=torch.bool)
    torch.testing.assert_close(net(x, t, 0, cond=cond, cond_mask=all_masked), none)
    keep_first = torch.tensor([[True, False, False]] * 2)
    torch.testing.assert_close(net(x, t, 0, cond=cond, cond_mask=keep_first),
                               net(x, t, 0, cond=cond[:, :1]))


def test_a_new_memory_pathway_starts_as_a_no_op():
    net = Backbone(BackboneConfig(dim=32, depth=2, heads=4, cond_dim=16))
    x, t = inputs()
    torch.testing.assert_close(net(x, t, 0, cond=torch.randn(2, 3, 16)), net(x, t, 0))


def test_every_parameter_receives_a_gradient():
    net = model(cond_dim=16).train()
    x, t = inputs()
    net(x, t, torch.tensor([0, 1]), cond=torch.randn(2, 2, 16)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda net, x, t: net(x[..., :5], t, 0), r"x must be \(batch, length, 32\)"),
        (lambda net, x, t: net(x, t[:1], 0), r"t must be \(2,\)"),
        (lambda net, x, t: net(x, t, 0, padding_mask=torch.ones(2, 3, dtype=torch.bool)),
         r"padding_mask must be \(2, 10\)"),
        (lambda net, x, t: net(x * float("nan"), t, 0), "NaN or infinite"),
        (lambda net, x, t: net(torch.randn(1, 65, 32), t[:1], 0), "65 positions exceed max_len 64"),
        (lambda net, x, t: net(x, t, 0, cond=torch.randn(2, 1, 4)), "no cross-attention"),
    ],
)
def test_bad_input_is_refused_with_the_expected_shape(call, message):
    x, t = inputs()
    with pytest.raises(ValueError, match=message):
        call(model(), x, t)


def test_the_config_round_trips_and_rejects_unknown_keys_and_bad_sizes():
    config = BackboneConfig(dim=64, heads=2, cond_dim=8)
    assert BackboneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown backbone config keys"):
        BackboneConfig.from_dict({"dimm": 3})
    with pytest.raises(ValueError, match="must split into 3 heads"):
        BackboneConfig(dim=64, heads=3)
