"""The head with adapters: merged LoRA in generation, names and weights, the router, --explain."""

import numpy as np
import pytest
from aios_text.adapted import AdaptedModels
from aios_text.corpus import load_corpus
from aios_text.data import TokenStream
from aios_text.evolve import EvolveOptions, evolve
from aios_text.head import TextDiffusionHead
from aios_text.inference import load_array_text_model
from micro_model import base_text, new_domain, new_text, trained_model

from aios.errors import AiosError
from aios.protocols import GenerationRequest


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """(model, adapter directory) with one kept adapter `words` and router centroids."""
    model = trained_model(tmp_path_factory)
    root = tmp_path_factory.mktemp("adapted")
    _, tokenizer, _ = load_array_text_model(model)
    base = (TokenStream(np.array(tokenizer.encode(base_text(3000, seed=1)))),
            TokenStream(np.array(tokenizer.encode(base_text(600, seed=2)))))
    from aios.evolve.adapters import AdapterStore

    store = AdapterStore(root / "adapters")
    options = EvolveOptions(steps=100, lr=3e-2, eval_windows=16,
                            min_gain=0.0, max_base_loss=10.0, held_out=0.15)
    decision = evolve(model, load_corpus([str(new_domain(root / "new"))], root), "words",
                      options=options, store=store, base=base, progress=False)
    assert decision.kept
    return model, store.directory


def difference(a, b):
    """The largest difference of two logit arrays (the mask token's -inf in both is equal)."""
    finite = np.isfinite(a) & np.isfinite(b)
    return np.abs(a[finite] - b[finite]).max()


def models(adapters):
    model, directory = adapters
    net, tokenizer, _ = load_array_text_model(model)
    return AdaptedModels(net, tokenizer, model, directory)


def test_an_adapted_model_computes_other_logits_than_the_base(adapters):
    adapted = models(adapters)
    tokens = np.array([adapted.tokenizer.encode(new_text(2))])
    t = np.array([0.5], np.float32)
    assert difference(adapted.model("words")(tokens, t), adapted.base(tokens, t)) > 1e-3


def test_named_adapters_get_normalised_weights(adapters):
    adapted = models(adapters)
    assert adapted.resolve(["words:3"], "x").weights == {"words": 1.0}
    assert adapted.resolve("none", "x").weights == {}


def test_an_unknown_adapter_or_a_bad_weight_is_refused(adapters):
    adapted = models(adapters)
    with pytest.raises(AiosError, match="no adapter 'poems'"):
        adapted.resolve(["poems"], "x")
    with pytest.raises(AiosError, match="is not a number"):
        adapted.resolve(["words:lots"], "x")


def test_the_router_gives_new_domain_prompts_the_adapter_and_base_prompts_none(adapters):
    adapted = models(adapters)
    assert adapted.resolve("auto", new_text(3)).weights == {"words": 1.0}
    assert adapted.resolve("auto", base_text(30, seed=77)).weights == {}


def test_generation_with_an_adapter_differs_and_explains_its_choice(adapters):
    model, directory = adapters
    head = TextDiffusionHead(model=str(model), length=12, adapters_dir=str(directory))
    outputs = {}
    for wanted in ("none", "words"):
        request = GenerationRequest(prompt=new_text(1), modality="text", num_steps=4, seed=0,
                                    options={"adapters": wanted, "explain": True})
        state = head.initial_state(request, np.random.default_rng(0))
        logits = head.denoise(state, 1.0, request)
        outputs[wanted] = logits
        assert head.last_explain["chosen"] == ({} if wanted == "none" else {"words": 1.0})
    assert difference(outputs["none"], outputs["words"]) > 1e-3
