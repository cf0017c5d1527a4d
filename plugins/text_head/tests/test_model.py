"""The text head's copy head: a pointer from masked positions to visible tokens."""

import numpy as np
import pytest
import text_fixtures
import torch
from aios_text.diffusion import mdlm_loss
from aios_text.inference import load_array_text_model
from aios_text.model import COPY_GATE_INIT, CopyHead, TextDiffusionModel, TextHead
from aios_text.model_dir import load_text_model, save_text_model
from aios_text.recipe import save_int8_model

from aios.errors import AiosError
from aios.models.backbone import Backbone, BackboneConfig
from aios.quant.linear import set_activations

VOCAB, MASK, PAD = 40, 1, 0


def copy_model(copy_dim=16, seed=0):
    torch.manual_seed(seed)
    backbone = Backbone(BackboneConfig(dim=32, depth=2, heads=4, max_len=48))
    return TextDiffusionModel(backbone, TextHead(VOCAB, 32, MASK, copy_dim=copy_dim))


def test_the_copy_heads_output_is_a_log_distribution_that_never_predicts_the_mask():
    tokens = torch.randint(2, VOCAB, (3, 10))
    tokens[:, 6:] = MASK
    logits = copy_model()(tokens, torch.rand(3))
    assert torch.isinf(logits[..., MASK]).all()
    assert torch.allclose(logits.exp().sum(-1), torch.ones(3, 10), atol=1e-5)


def test_a_fresh_copy_head_barely_changes_what_the_model_predicts():
    plain, copying = copy_model(copy_dim=0), copy_model()
    copying.load_state_dict(plain.state_dict(), strict=False)
    tokens = torch.randint(2, VOCAB, (2, 12))
    t = torch.rand(2)
    with torch.no_grad():
        before = torch.softmax(plain(tokens, t), -1)
        after = copying(tokens, t).exp()
    gate = float(torch.sigmoid(torch.tensor(COPY_GATE_INIT)))
    assert (after - before).abs().max() <= gate + 1e-6


def test_adding_the_shifted_pointer_to_a_copy_head_changes_nothing_until_it_trains():
    net = copy_model()
    tokens = torch.randint(3, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    tokens[:, 6:] = MASK
    with torch.no_grad():
        before = net(tokens, torch.full((2,), 0.5))
        net.head.copy.add_shift()
        after = net(tokens, torch.full((2,), 0.5))
    assert net.head.copy.shift
    torch.testing.assert_close(after, before)


def test_only_visible_tokens_can_be_copied():
    head = CopyHead(8, 4)
    with torch.no_grad():
        head.gate.bias.fill_(30.0)  # copy only
    tokens = torch.tensor([[5, 6, MASK, 7, PAD]])
    sources = torch.tensor([[True, True, False, False, False]])  # 7 and PAD hidden
    logits = torch.zeros(1, 5, VOCAB)
    probs = head(torch.randn(1, 5, 8), logits, tokens, sources).exp()
    assert torch.allclose(probs[0, :, 5] + probs[0, :, 6], torch.ones(5), atol=1e-5)
    assert probs[0, :, 7].max() < 1e-6 and probs[0, :, PAD].max() < 1e-6


def test_with_nothing_visible_the_copy_head_leaves_the_vocabulary_distribution():
    head = CopyHead(8, 4)
    with torch.no_grad():
        head.gate.bias.fill_(30.0)
    logits = torch.randn(1, 3, VOCAB)
    out = head(torch.randn(1, 3, 8), logits, torch.full((1, 3), MASK),
               torch.zeros(1, 3, dtype=torch.bool))
    assert torch.allclose(out, torch.log_softmax(logits, -1), atol=1e-5)


def copy_batch(generator, batch=32, length=8):
    """`[a b c ...] <sep> [a b c ...]`: the second half repeats random tokens of the first."""
    first = torch.randint(3, VOCAB, (batch, length), generator=generator)
    tokens = torch.cat([first, torch.full((batch, 1), 2), first], dim=1)
    maskable = torch.zeros_like(tokens, dtype=torch.bool)
    maskable[:, length + 1:] = True
    return tokens, maskable


def copy_accuracy(net, generator):
    tokens, maskable = copy_batch(generator, batch=64)
    noisy = torch.where(maskable, torch.full_like(tokens, MASK), tokens)
    with torch.no_grad():
        guess = net(noisy, torch.ones(len(tokens))).argmax(-1)
    return float((guess == tokens)[maskable].float().mean())


def test_a_model_with_a_copy_head_learns_to_repeat_unseen_random_tokens():
    """Random tokens cannot be memorised; only reading them from the context predicts them."""
    net = copy_model()
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    schedule = lambda t: 1.0 - np.asarray(t)  # noqa: E731 - the linear masking schedule
    before = copy_accuracy(net, torch.Generator().manual_seed(99))
    for _ in range(150):
        tokens, maskable = copy_batch(generator)
        loss = mdlm_loss(net, tokens, schedule, MASK, generator, maskable=maskable)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = copy_accuracy(net, torch.Generator().manual_seed(99))
    assert before < 0.2 and after > 0.9


@pytest.fixture(scope="module")
def copy_model_dir(tmp_path_factory):
    """The micro cat model given a copy head with a non-trivial gate, saved float and int8."""
    source = text_fixtures.cat_model(tmp_path_factory)
    model, tokenizer, _ = load_text_model(source)
    torch.manual_seed(1)
    model.head.copy = CopyHead(model.backbone.config.dim, 8, shift=True)
    with torch.no_grad():
        model.head.copy.gate.weight.normal_(0.0, 0.5)
        model.head.copy.gate.bias.fill_(0.0)
        model.head.copy.query_prev.weight.normal_(0.0, 0.5)
        model.head.copy.query_next.weight.normal_(0.0, 0.5)
    root = tmp_path_factory.mktemp("copy-model")
    save_text_model(root / "model", model, tokenizer)
    assert save_int8_model(root / "model-int8", model, tokenizer, schedule="linear")
    return root / "model", tokenizer


@pytest.mark.parametrize("form", ["model", "model-int8"])
def test_the_numpy_model_matches_torch_with_a_copy_head(copy_model_dir, form):
    directory, tokenizer = copy_model_dir
    directory = directory.parent / form
    model, _, settings = load_text_model(directory)
    set_activations(model, "float")  # the exact weight-only path: what the NumPy model computes
    net, _, _ = load_array_text_model(directory)
    assert settings["copy_dim"] == 8 and settings["copy_shift"]
    assert net.copy.key_prev is not None and net.copy.key_next is not None
    ids = tokenizer.encode("the cat sat on the mat. the cat")
    tokens = np.array([[tokenizer.pad_id] * 3 + ids + [tokenizer.mask_id] * 5,
                       ids[:4] + [tokenizer.mask_id] * (len(ids) + 4)])
    padding = tokens != tokenizer.pad_id
    t = np.array([0.7, 0.3], np.float32)
    expected = model(torch.tensor(tokens), torch.tensor(t),
                     padding_mask=torch.tensor(padding)).detach().numpy()
    got = net(tokens, t, padding_mask=padding)
    finite = np.isfinite(expected)
    assert (np.isfinite(got) == finite).all()
    np.testing.assert_allclose(got[finite], expected[finite], atol=1e-4)


def test_a_copy_model_refuses_a_key_value_cache(copy_model_dir):
    directory, tokenizer = copy_model_dir
    net, _, _ = load_array_text_model(directory)
    tokens = np.array([tokenizer.encode("the cat")])
    t = np.ones(1, np.float32)
    cache = net.cache(tokens, t, padding_mask=np.ones_like(tokens, bool), past=None)
    with pytest.raises(AiosError, match="without a key/value cache"):
        net(tokens, t, past=cache)


def test_the_head_generates_with_a_copy_model_without_a_prefix_cache(copy_model_dir):
    from aios_text.head import TextDiffusionHead

    from aios.protocols import GenerationRequest

    directory, _ = copy_model_dir
    head = TextDiffusionHead(model=str(directory), length=6)
    request = GenerationRequest("the cat", "text", 4)
    state = head.initial_state(request, np.random.default_rng(0))
    assert state.on_prefix is None
    logits = head.denoise(state, np.ones(1), request)
    assert logits.shape == (*state.tokens.shape, head.tokenizer.vocab_size)
    dim = head.model.embedding.shape[1]
    counts = head.parameter_counts()
    # query, key and the four neighbour projections (8 x dim each), the gate and its bias
    assert counts["head"] == head.model.embedding.size + 8 * dim * 6 + dim + 1


def test_the_shifted_pointer_finds_a_token_by_the_token_after_it():
    """Backward induction: a position whose right neighbour is token B points at the context
    position whose right neighbour is B, even when its own state says nothing."""
    dim = 4
    head = CopyHead(dim, 4, shift=True)
    with torch.no_grad():
        for layer in (head.query, head.key, head.query_prev, head.key_prev):
            layer.weight.zero_()
        head.query_next.weight.copy_(torch.eye(4) * 20.0)
        head.key_next.weight.copy_(torch.eye(4))
        head.gate.bias.fill_(30.0)  # copy only
    # hidden states are one-hot "token identities" of positions 0..5; 3 and 4 are the answer
    hidden = torch.zeros(1, 6, dim)
    for position, feature in enumerate([0, 1, 2, 3, 3, 2]):
        hidden[0, position, feature] = 1.0
    tokens = torch.tensor([[10, 11, 12, 13, 0, 12]])  # position 4 is masked (0)
    sources = torch.tensor([[True, True, True, True, False, False]])
    probs = head(hidden, torch.zeros(1, 6, 16), tokens, sources).exp()
    # position 4 is followed by feature 2, as position 1 is: it copies token 11
    assert probs[0, 4].argmax() == 11 and probs[0, 4, 11] > 0.9
