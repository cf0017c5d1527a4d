import math

import numpy as np
import pytest
import torch
from aios_text.diffusion import (
    loss_weight,
    mask_tokens,
    mdlm_loss,
    sample_times,
)
from aios_text.model import TextDiffusionModel, TextHead
from torch import nn

from aios.models.backbone import Backbone, BackboneConfig
from aios.schedules import masking_schedule

linear_alpha = masking_schedule("linear").alpha
VOCAB, MASK = 50, 1


def cosine_alpha(t):
    return np.cos(0.5 * np.pi * np.asarray(t))


def test_the_linear_schedule_weights_the_loss_by_one_over_t():
    t = np.array([0.01, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(loss_weight(linear_alpha, t), 1 / t, rtol=1e-6)


def test_the_cosine_schedule_weight_matches_its_derivative():
    t = np.array([0.1, 0.5, 0.9])
    expected = 0.5 * np.pi * np.sin(0.5 * np.pi * t) / (1 - np.cos(0.5 * np.pi * t))
    np.testing.assert_allclose(loss_weight(cosine_alpha, t), expected, rtol=1e-6)


def test_times_are_stratified_over_the_unit_interval():
    t = sample_times(1000, torch.Generator().manual_seed(0))
    counts = np.histogram(t.numpy(), bins=10, range=(0, 1))[0]
    assert counts.min() >= 99 and counts.max() <= 101


def test_tokens_are_masked_at_the_rate_the_schedule_gives_and_only_where_allowed():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, VOCAB, (4, 5000), generator=g)
    t = torch.tensor([0.1, 0.5, 0.9, 0.5])
    maskable = torch.ones_like(tokens, dtype=torch.bool)
    maskable[3, :2500] = False
    noisy, masked = mask_tokens(tokens, t, linear_alpha, MASK, g, maskable)
    rates = masked.float().mean(dim=1).numpy()
    np.testing.assert_allclose(rates[:3], [0.1, 0.5, 0.9], atol=0.03)
    assert not masked[3, :2500].any()
    assert torch.equal(noisy[~masked], tokens[~masked])
    assert (noisy[masked] == MASK).all()


class Uniform(nn.Module):
    """Predicts every real token with equal probability: its NELBO is exactly log(V - 1)."""

    def forward(self, tokens, t, padding_mask=None):
        logits = torch.zeros(*tokens.shape, VOCAB)
        logits[..., MASK] = float("-inf")
        return logits


@pytest.mark.parametrize("alpha", [linear_alpha, cosine_alpha])
def test_the_loss_of_a_uniform_model_is_log_vocab_under_any_schedule(alpha):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, VOCAB, (512, 64), generator=g)
    losses = [float(mdlm_loss(Uniform(), tokens, alpha, MASK, g)) for _ in range(8)]
    assert np.mean(losses) == pytest.approx(math.log(VOCAB - 1), rel=0.02)


def model(tie=True):
    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig(dim=32, depth=2, heads=4, max_len=32))
    return TextDiffusionModel(backbone, TextHead(VOCAB, 32, MASK, tie=tie))


def test_the_model_maps_tokens_to_logits_that_never_predict_the_mask():
    logits = model()(torch.randint(0, VOCAB, (3, 7)), torch.rand(3))
    assert logits.shape == (3, 7, VOCAB)
    assert torch.isinf(logits[..., MASK]).all() and torch.isfinite(logits[..., 2:]).all()


def test_tied_heads_reuse_the_embedding_and_untied_ones_add_a_projection():
    tied, untied = model(tie=True), model(tie=False)
    extra = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert extra == VOCAB * 32


def test_a_model_learns_a_fixed_sequence_and_its_loss_drops():
    net = model()
    pattern = torch.arange(2, 18).repeat(16, 1)
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(mdlm_loss(net, pattern, linear_alpha, MASK, g))
    for _ in range(80):
        loss = mdlm_loss(net, pattern, linear_alpha, MASK, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = np.mean([float(mdlm_loss(net, pattern, linear_alpha, MASK, g)) for _ in range(5)])
    assert last < 0.1 * first


def test_float_tokens_are_refused():
    with pytest.raises(TypeError, match="tokens must be an integer tensor"):
        model()(torch.zeros(1, 4), torch.rand(1))
