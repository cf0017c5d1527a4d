"""Generation end to end: a micro model trained by the recipe, saved, loaded as a head and run
through the engine with the samplers pack."""

import types
from pathlib import Path

import numpy as np
import pytest
import text_fixtures
from aios_text.head import TextDiffusionHead
from aios_text.model_dir import load_text_model, save_text_model
from aios_text.passages import context_ids

import aios
from aios.config import load_config
from aios.engine import ArrowEngine
from aios.registry import Registry


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return text_fixtures.cat_model(tmp_path_factory)


SENTENCE = text_fixtures.SENTENCE


def registry_with_head():
    registry = Registry.discover()
    module = types.ModuleType("text_test_plugin")
    module.AIOS_CONTRACT_VERSION = aios.CONTRACT_VERSION

    def heads(register):
        register("text-test", TextDiffusionHead, family="discrete")

    module.aios_register_heads = aios.hookimpl(heads)
    registry.add_plugin(module, name="text-test", distribution="tests", version="0")
    return registry


def engine(model_dir, *overrides):
    registry = registry_with_head()
    config = load_config(overrides=["head.name=text-test", f"head.model={model_dir}",
                                    *overrides], registry=registry)
    return ArrowEngine.from_config(config, registry=registry)


def test_a_saved_model_loads_back_with_identical_outputs(model_dir, tmp_path):
    import torch

    model, tokenizer, settings = load_text_model(model_dir)
    tokens = torch.tensor([tokenizer.encode(SENTENCE * 2)])
    again, _, _ = load_text_model(save_text_model(tmp_path / "copy", model, tokenizer))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, torch.tensor([0.5])),
                                   again(tokens, torch.tensor([0.5])))
    assert settings["mask_id"] == tokenizer.mask_id


def test_the_trained_model_continues_its_training_text(model_dir):
    out = engine(model_dir, "sampler.name=low-confidence", "head.length=12").diffuse(
        "the cat sat", seed=0, num_steps=12)
    assert out.startswith("the cat sat")
    assert "mat" in out


def test_generate_is_the_plain_text_entry_point(model_dir):
    e = engine(model_dir, "sampler.name=low-confidence", "head.length=8")
    assert e.generate("the cat", seed=1, num_steps=8) == e.diffuse("the cat", seed=1,
                                                                   num_steps=8, modality="text")


def test_a_seed_reproduces_the_output(model_dir):
    e = engine(model_dir, "sampler.name=mdlm", "head.length=10")
    assert e.diffuse("the", seed=3, num_steps=5) == e.diffuse("the", seed=3, num_steps=5)


def test_a_batch_of_prompts_gives_one_text_per_prompt(model_dir):
    out = engine(model_dir, "sampler.name=low-confidence", "head.length=8").diffuse(
        ["the cat", "on the"], seed=0, num_steps=8)
    assert len(out) == 2 and out[0].startswith("the cat") and out[1].startswith("on the")


def test_infilling_keeps_prefix_and_suffix_and_fills_between(model_dir):
    out = engine(model_dir, "sampler.name=low-confidence").diffuse(
        "the cat", seed=0, num_steps=6, length=6, suffix=" the mat.")
    assert out.startswith("the cat") and out.endswith(" the mat.")
    assert len(out) > len("the cat the mat.")


def test_each_step_unmasks_and_the_head_is_called_once_per_step(model_dir):
    e = engine(model_dir, "sampler.name=low-confidence", "head.length=8")
    masked = []
    e.diffuse("the", seed=0, num_steps=4,
              callback=lambda i, n, s: masked.append(int((s.tokens == e.head.tokenizer.mask_id)
                                                         .sum())))
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    assert e.head.calls <= 4


def test_a_request_longer_than_the_model_is_refused(model_dir):
    with pytest.raises(ValueError, match="more than the model's 96"):
        engine(model_dir, "head.length=200").diffuse("the", seed=0, num_steps=2)


def test_decoding_stops_at_end_of_sequence(model_dir):
    e = engine(model_dir, "sampler.name=low-confidence", "head.length=6")
    from aios.protocols import GenerationRequest, MaskedState

    tok = e.head.tokenizer
    ids = [*tok.encode("the cat"), tok.eos_id, *tok.encode(" junk")]
    request = GenerationRequest(prompt="the cat", modality="text", num_steps=1)
    state = MaskedState(np.array([ids]), tok.mask_id, tok.eos_id)
    assert e.head.decode(state, request) == "the cat"


def test_the_prefix_cache_equals_a_forward_pass_where_the_prefix_cannot_see_ahead(model_dir):
    import torch

    from aios.protocols import GenerationRequest

    e = engine(model_dir, "head.length=10")
    head = e.head
    request = GenerationRequest(prompt="the cat sat", modality="text", num_steps=4)
    state = head.initial_state(request, np.random.default_rng(0))
    tokens = state.tokens.copy()
    head.denoise(state, 0.5, request)
    filled = head.tokenizer.encode(" on the")
    prefix = len(head.tokenizer.encode("the cat sat")) + len(filled)
    tokens[:, prefix - len(filled):prefix] = filled
    state.on_prefix(tokens, prefix)  # positions [:prefix] are final now
    cached = head.denoise(type(state)(tokens, state.mask_id, state.eos_id), 0.5, request)
    n = tokens.shape[1]
    sees = torch.ones(1, n, n, dtype=torch.bool)
    sees[:, :prefix, prefix:] = False  # the cached prefix never saw the positions after it
    reference_model, _, _ = load_text_model(model_dir)  # the torch model, as trained
    with torch.no_grad():
        reference = reference_model(torch.as_tensor(tokens), torch.tensor([0.5]),
                                    attention_mask=sees).numpy()
    np.testing.assert_allclose(cached[:, prefix:], reference[:, prefix:], atol=1e-4)


def test_the_head_computes_the_logits_of_the_torch_model_it_was_trained_as(model_dir):
    import torch

    from aios.protocols import GenerationRequest

    e = engine(model_dir, "head.length=6")
    request = GenerationRequest(prompt=["the cat", "on the mat and"], modality="text",
                                num_steps=2)
    state = e.head.initial_state(request, np.random.default_rng(0))
    logits = e.head.denoise(state, 0.7, request)
    torch_model, tokenizer, _ = load_text_model(model_dir)
    tokens = torch.as_tensor(state.tokens)
    with torch.no_grad():
        reference = torch_model(tokens, torch.full((2,), 0.7),
                                padding_mask=tokens != tokenizer.pad_id).numpy()
    real = state.tokens != tokenizer.pad_id
    np.testing.assert_allclose(logits[real], reference[real], atol=1e-4)


def test_semi_autoregressive_decoding_with_the_cache_evaluates_fewer_positions(model_dir):
    outputs, positions = {}, {}
    for cache in (True, False):
        e = engine(model_dir, "sampler.name=semi-ar", "sampler.block_length=4", "head.length=12",
                   f"head.prefix_cache={str(cache).lower()}")
        outputs[cache] = e.diffuse("the cat sat", seed=0, num_steps=6)
        positions[cache] = e.head.positions
    assert positions[True] < 0.75 * positions[False]
    from aios_text.head import MASK_PLACEHOLDER

    # (the micro model may end either text at once with <eos>, so their length is not fixed)
    assert all(o.startswith("the cat sat") and MASK_PLACEHOLDER not in o
               for o in outputs.values())


def test_streaming_shows_masks_as_placeholders_until_the_last_step(model_dir):
    from aios_text.head import MASK_PLACEHOLDER

    e = engine(model_dir, "sampler.name=low-confidence", "head.length=8")
    seen = []
    final = e.diffuse("the cat", seed=0, num_steps=4, stream=lambda i, n, text: seen.append(text))
    assert len(seen) == 4 and seen[-1] == final
    assert seen[0].startswith("the cat") and seen[0].count(MASK_PLACEHOLDER) >= 4
    counts = [t.count(MASK_PLACEHOLDER) for t in seen]
    assert counts == sorted(counts, reverse=True) and counts[-1] == 0


def test_the_default_head_says_how_to_fix_a_missing_shipped_model(monkeypatch, tmp_path):
    import aios_text.inference as inference

    from aios.errors import AiosError

    monkeypatch.setattr(inference, "DEFAULT_MODEL", tmp_path / "missing")
    with pytest.raises(AiosError, match="default text model is missing.*reinstall aios-text"):
        TextDiffusionHead()
    with pytest.raises(AiosError, match="no text model is in 'nowhere'.*shipped model \\(default"):
        TextDiffusionHead(model="nowhere")


def test_a_shipped_model_is_named_by_its_directory_name_and_a_path_wins(tmp_path, monkeypatch):
    from aios_text.inference import DEFAULT_MODEL, SHIPPED_MODELS, model_path

    assert model_path("") == DEFAULT_MODEL and model_path("default") == DEFAULT_MODEL
    assert model_path("~/m") == Path.home() / "m"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    assert model_path("default") == Path("default")  # an existing local directory is meant
    assert model_path("default") != SHIPPED_MODELS / "default"


def test_the_generate_command_takes_sampler_length_infill_and_stream(model_dir, capsys):
    from aios.cli import app as cli

    base = ["--set", "head.name=text", "--set", f"head.model={model_dir}", "generate", "the cat",
            "--seed", "0", "--steps", "6"]
    assert cli.main([*base, "--sampler", "low-confidence", "--length", "6",
                     "--infill", " the mat."]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("the cat") and out.endswith(" the mat.")
    assert cli.main([*base, "--sampler", "mdlm", "--length", "8", "--stream"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[0].startswith("[1/6] the cat") and lines[-1].startswith("[6/6]")
    assert captured.out.strip() == lines[-1].removeprefix("[6/6] ")
    assert cli.main([*base, "--sampler", "ddim"]) == 2  # a continuous sampler for a text head
    assert "discrete" in capsys.readouterr().err


def context_request(*passages, prompt="the cat", length=4):
    from aios.memory.conditioner import Passage

    return aios.GenerationRequest(prompt=prompt, modality="text", num_steps=4,
                                  options={"length": length},
                                  context=tuple(Passage(t, s) for t, s in passages))


def test_retrieved_passages_go_before_the_prompt_each_closed_by_eos_best_last(model_dir):
    head = TextDiffusionHead(model=str(model_dir))
    tok = head.tokenizer
    request = context_request(("on the mat", 0.9), ("the cat sat", 0.5))
    state = head.initial_state(request, np.random.default_rng(0))
    expected = (tok.encode(" the cat sat") + [tok.eos_id] + tok.encode(" on the mat")
                + [tok.eos_id] + tok.encode("the cat") + [tok.mask_id] * 4)
    assert state.tokens[0].tolist() == expected
    assert state.context_end.tolist() == [len(expected) - 4 - len(tok.encode("the cat"))]


def test_passages_that_do_not_fit_are_dropped_lowest_score_first(model_dir):
    head = TextDiffusionHead(model=str(model_dir))
    eos = head.tokenizer.eos_id
    texts = {0.2: SENTENCE * 3, 0.9: "the mat. " * 6, 0.1: "the cat.", 0.5: "sat on " * 8}
    encoded = {score: head.tokenizer.encode(" " + text) for score, text in texts.items()}
    request = context_request(*((text, score) for score, text in texts.items()), length=8)
    budget = len(encoded[0.9]) + len(encoded[0.5]) + 2 + len(encoded[0.2])  # 0.2 misses by 1
    ids = context_ids(head.tokenizer, request.context, budget=budget)
    assert ids == [*encoded[0.5], eos, *encoded[0.9], eos]
    state = head.initial_state(request, np.random.default_rng(0))
    assert state.tokens.shape[1] <= head.model.backbone.config.max_len


def test_the_output_shows_the_prompt_and_generation_but_never_the_context(model_dir):
    e = engine(model_dir, "sampler.name=low-confidence", "head.length=6")
    request = context_request(("the dog ran far away", 0.9), length=6)
    state = e.head.initial_state(request, np.random.default_rng(0))
    text = e.head.decode(state, request)
    assert text == "the cat" + "\u2591" * 6  # masks shown, context hidden


def test_generation_with_context_runs_under_the_prefix_cache_and_keeps_the_prompt(model_dir):
    from aios.memory.conditioner import Passage

    e = engine(model_dir, "sampler.name=semi-ar", "head.length=8")

    class Remembers:
        def condition(self, request, context):
            return request.with_context(Passage("the cat sat on the mat.", 0.8))

    e.conditioners = (Remembers(),)
    out = e.diffuse("the cat", seed=0, num_steps=8)
    assert out.startswith("the cat") and "<eos>" not in out
    width = e.head.initial_state(e.last_request, np.random.default_rng(0)).tokens.shape[1]
    assert e.head.positions < e.head.calls * width  # cached positions were not recomputed
