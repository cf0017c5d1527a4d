"""`aios evolve` on the micro model: a useful adaptation is kept, a useless one discarded."""

import json

import numpy as np
import pytest
from aios_text.adapter_kinds import LoRAKind
from aios_text.corpus import Document, load_corpus
from aios_text.data import TokenStream
from aios_text.evolve import (
    LOG_FILE,
    EvolveOptions,
    evolve,
    lora_method,
    side_method,
    split_documents,
)
from aios_text.inference import load_array_text_model
from micro_model import base_text, new_domain, new_text, trained_model

from aios.evolve.adapters import AdapterStore
from aios.evolve.router import BASE, CENTROIDS

#: The balanced rule of these tests: the micro model is so small that learning the new order
#: costs it about ten percent on its own text, so the base budget is 15% here (2% by default).
RULE = {"min_gain": 0.05, "max_base_loss": 0.15, "held_out": 0.15}


OPTIONS = {"steps": 100, "lr": 3e-2, "batch_size": 16,
           "eval_windows": 16}


def base_streams(model):
    """Replay and check text of the micro model's domain, the same in every run."""
    _, tokenizer, _ = load_array_text_model(model)
    return (TokenStream(np.array(tokenizer.encode(base_text(3000, seed=1)))),
            TokenStream(np.array(tokenizer.encode(base_text(600, seed=2)))))


def adapt(model, directory, name, *, shuffle_tokens=False, method=None, **rule):
    store = AdapterStore(directory / "adapters")
    documents = load_corpus([str(new_domain(directory / "new"))], directory)
    options = EvolveOptions(**OPTIONS, **{**RULE, **rule})
    decision = evolve(model, documents, name, method=method or lora_method(4, 8.0),
                      options=options, store=store,
                      base=base_streams(model), shuffle_tokens=shuffle_tokens, progress=False)
    return store, decision


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    """(model, store, decision) of one adaptation to the new domain."""
    model = trained_model(tmp_path_factory)
    store, decision = adapt(model, tmp_path_factory.mktemp("evolve"), "words")
    return model, store, decision


def test_an_adaptation_to_new_text_is_kept_and_lowers_its_perplexity(evolved):
    _, store, decision = evolved
    assert decision.kept, decision.reason
    assert decision.new_after < 0.95 * decision.new_before
    assert decision.base_after <= 1.15 * decision.base_before
    assert store.names() == ["words"]
    assert store.info("words").parameters == decision.parameters


def test_a_kept_adapter_leaves_centroids_for_the_router(evolved):
    from aios.evolve.router import AdapterRouter

    _, store, _ = evolved
    router = AdapterRouter(store.directory, type("E", (), {"dim": None, "name": ""})())
    try:
        assert router.names() == sorted([BASE, "words"])
    finally:
        router.close()
    assert (store.directory / CENTROIDS).is_dir()


def test_a_side_network_adaptation_is_kept_and_generation_applies_it(evolved, tmp_path):
    from aios_text.adapted import AdaptedModels

    model, _, _ = evolved
    store, decision = adapt(model, tmp_path, "side", method=side_method(blocks=1, hidden=32))
    assert decision.kept, decision.reason
    assert (decision.kind, decision.level) == ("sidenet", 1)
    info = store.info("side")
    assert (info.kind, info.level, dict(info.options)) == ("sidenet", 1,
                                                          {"blocks": 1, "hidden": 32})
    net, tokenizer, _ = load_array_text_model(model)
    dim = net.backbone.config.dim
    assert info.parameters == decision.parameters == 2 * 32 * dim
    adapted = AdaptedModels(net, tokenizer, model, store.directory).model("side")
    assert sorted(adapted.backbone.side) == [net.backbone.config.depth - 1]
    tokens = np.array([tokenizer.encode(new_text(2))])
    t = np.array([0.5], np.float32)
    a, b = adapted(tokens, t), net(tokens, t)
    finite = np.isfinite(a) & np.isfinite(b)
    assert np.abs(a[finite] - b[finite]).max() > 1e-3


def test_an_adaptation_trained_on_shuffled_tokens_is_discarded(evolved, tmp_path):
    model, _, _ = evolved
    store, decision = adapt(model, tmp_path, "shuffled", shuffle_tokens=True)
    assert not decision.kept
    assert decision.reason.startswith("discarded: new-domain perplexity fell")
    assert store.names() == []
    entry = json.loads((store.directory / LOG_FILE).read_text().splitlines()[-1])
    assert entry["name"] == "shuffled" and entry["kept"] is False


def test_an_adaptation_that_costs_the_base_domain_too_much_is_discarded(evolved, tmp_path):
    model, _, _ = evolved
    # a budget no adaptation meets: the base perplexity would have to halve
    store, decision = adapt(model, tmp_path, "greedy", max_base_loss=-0.5)
    assert not decision.kept
    assert "base-domain perplexity rose" in decision.reason
    assert store.names() == []


def test_every_decision_is_logged_with_its_scores(evolved):
    _, store, decision = evolved
    entry = json.loads((store.directory / LOG_FILE).read_text().splitlines()[-1])
    assert entry["kept"] is True
    assert entry["new_after"] == pytest.approx(decision.new_after)


def test_the_held_out_split_is_stable_and_about_the_asked_share():
    docs = [Document("s", f"t{i}", "x") for i in range(1000)]
    train, held = split_documents(docs, 0.1)
    assert 0.07 < len(held) / len(docs) < 0.13
    assert split_documents(docs, 0.1) == (train, held)


def test_remembered_requests_are_adapted_to_only_above_the_threshold(evolved):
    from aios_text.inference import load_array_text_model
    from aios_text.uncertainty import Calibration, calibrate
    from micro_model import base_text

    model, _, _ = evolved
    net, tokenizer, _ = load_array_text_model(model)
    stream = np.array(tokenizer.encode(base_text(600, seed=1)))
    calibrate(net, tokenizer, stream, windows=8, progress=False).save(model)
    assert Calibration.load(model)
    texts = [base_text(20, seed=5), "zq xv kj 9w #! qq vv zz pp 0x7f ~~ jj ww yy kk"]
    assert LoRAKind.uncertain(model, texts, threshold=1.5) == [texts[1]]
