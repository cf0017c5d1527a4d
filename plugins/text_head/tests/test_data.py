import math

import numpy as np
import pytest
import torch
from aios_text.corpus import Document
from aios_text.data import (
    AutoregressiveTask,
    MaskedDiffusionTask,
    TokenStream,
    autoregressive_nll,
    evaluate_autoregressive,
    evaluate_nelbo,
)
from aios_text.model import TextDiffusionModel, TextHead
from aios_text.tokenizer import train_tokenizer
from torch import nn

from aios.models.backbone import Backbone, BackboneConfig
from aios.schedules import masking_schedule

DOCS = [Document("t", str(i), f"document {i} says the fox is {i % 3} years old.")
        for i in range(30)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([d.text for d in DOCS], vocab_size=300)


def test_documents_are_joined_by_eos_and_decode_back(tokenizer):
    stream = TokenStream.from_documents(DOCS[:3], tokenizer, progress=False)
    ends = np.flatnonzero(stream.ids == tokenizer.eos_id)
    assert len(ends) == 3 and ends[-1] == len(stream) - 1
    first = stream.ids[: ends[0]]
    assert tokenizer.decode(first) == DOCS[0].text


def test_windows_are_slices_of_the_stream_drawn_from_the_generator():
    stream = TokenStream(np.arange(100))
    a = stream.windows(np.random.default_rng(3), 4, 10)
    b = stream.windows(np.random.default_rng(3), 4, 10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 10) and (np.diff(a, axis=1) == 1).all()


def test_chunks_cover_the_stream_without_overlap():
    chunks = TokenStream(np.arange(25)).chunks(10)
    np.testing.assert_array_equal(chunks.ravel(), np.arange(20))


def test_too_short_a_stream_and_a_float_array_are_refused():
    with pytest.raises(ValueError, match="fewer than one window of 10"):
        TokenStream(np.arange(5)).windows(np.random.default_rng(0), 1, 10)
    with pytest.raises(ValueError, match="1-D integer array"):
        TokenStream(np.zeros(4))


def test_a_saved_stream_loads_memory_mapped_with_the_same_ids(tmp_path):
    stream = TokenStream(np.arange(50))
    stream.save(tmp_path / "train.npy")
    loaded = TokenStream.load(tmp_path / "train.npy")
    np.testing.assert_array_equal(loaded.ids, stream.ids)
    assert isinstance(loaded.ids, np.memmap)


linear_alpha = masking_schedule("linear").alpha
VOCAB, MASK = 40, 1


def model():
    torch.manual_seed(0)
    return TextDiffusionModel(Backbone(BackboneConfig(dim=32, depth=1, heads=4, max_len=64)),
                              TextHead(VOCAB, 32, MASK))


def test_the_tasks_produce_batches_and_finite_losses():
    stream = TokenStream(np.random.default_rng(0).integers(2, VOCAB, 500))
    net = model()
    diffusion = MaskedDiffusionTask(stream, linear_alpha, MASK, length=16, batch_size=4)
    batch = diffusion.batch(np.random.default_rng(1))
    assert batch.shape == (4, 16) and batch.dtype == torch.int64
    assert torch.isfinite(diffusion.loss(net, batch, torch.Generator().manual_seed(0)))
    baseline = AutoregressiveTask(stream, length=16, batch_size=4)
    assert baseline.batch(np.random.default_rng(1)).shape == (4, 17)


class Oracle(nn.Module):
    """Knows the data is token 2 followed by 3, 4, ...: the causal baseline must be near-perfect."""

    def forward(self, tokens, t, attention_mask=None, padding_mask=None):
        logits = torch.full((*tokens.shape, VOCAB), -30.0)
        nxt = (tokens + 1).clamp(max=VOCAB - 1)
        logits.scatter_(-1, nxt[..., None], 30.0)
        return logits


def test_the_autoregressive_loss_scores_next_token_prediction():
    batch = torch.arange(2, 20)[None].repeat(3, 1)
    assert float(autoregressive_nll(Oracle(), batch)) < 1e-6


def test_evaluations_of_a_uniform_model_give_log_vocab():
    class Uniform(nn.Module):
        def forward(self, tokens, t, attention_mask=None, padding_mask=None):
            logits = torch.zeros(*tokens.shape, VOCAB)
            logits[..., MASK] = float("-inf")
            return logits

    stream = TokenStream(np.random.default_rng(0).integers(2, VOCAB, 5000))
    nelbo = evaluate_nelbo(Uniform(), stream, linear_alpha, MASK, length=32, samples=8)
    assert nelbo == pytest.approx(math.log(VOCAB - 1), rel=0.03)
    ar = evaluate_autoregressive(Uniform(), stream, length=32)
    assert ar == pytest.approx(math.log(VOCAB - 1), rel=1e-6)
