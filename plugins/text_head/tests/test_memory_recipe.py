"""Retrieval-augmented training: examples laid out as generation lays them out, real retrieval,
only the answer masked, and a run that fine-tunes and saves a model."""

import json

import numpy as np
import pytest
import text_fixtures
import torch
import yaml
from aios_text.facts import make_facts
from aios_text.inference import DEFAULT_MODEL
from aios_text.memory_recipe import (
    Example,
    MemoryRecipe,
    RetrievalTask,
    build_memory,
    example_row,
    load_memory_recipe,
    retrieve_examples,
    run_memory_recipe,
)
from aios_text.passages import context_ids
from aios_text.recipe import train_command
from aios_text.tokenizer import TextTokenizer

from aios.errors import ConfigError
from aios.memory.conditioner import Passage
from aios.quant.linear import QuantizedLinear, dequantize_linears
from aios.schedules import masking_schedule
from aios.training.loop import TrainConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return text_fixtures.cat_model(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer.load(DEFAULT_MODEL / "tokenizer.json")


EXAMPLE = Example("Where does the river Quell flow?", " The river Quell flows into the Marn Sea.",
                  (("The river Quell flows into the Marn Sea.", 0.9),
                   ("Bral castle stands on Mount Teo.", 0.4)))


def test_an_example_row_is_the_heads_layout_with_an_eos_padded_answer(tokenizer):
    row, start = example_row(tokenizer, EXAMPLE, answer_length=20, max_len=256)
    context = context_ids(tokenizer, [Passage(t, s) for t, s in EXAMPLE.passages], 256)
    prompt = tokenizer.encode(EXAMPLE.prompt)
    answer = tokenizer.encode(EXAMPLE.answer)
    assert row[:start] == context + prompt
    assert row[start:start + len(answer)] == answer
    assert row[start + len(answer):] == [tokenizer.eos_id] * (20 - len(answer))
    assert len(row) - start == 20


def test_a_long_answer_is_cut_but_still_ends_with_eos(tokenizer):
    row, start = example_row(tokenizer, EXAMPLE, answer_length=5, max_len=256)
    assert row[start:] == [*tokenizer.encode(EXAMPLE.answer)[:4], tokenizer.eos_id]


def test_passages_that_do_not_fit_the_model_are_dropped_lowest_first(tokenizer):
    best = tokenizer.encode(" " + EXAMPLE.passages[0][0])
    prompt = tokenizer.encode(EXAMPLE.prompt)
    max_len = len(prompt) + 8 + len(best) + 1
    row, start = example_row(tokenizer, EXAMPLE, answer_length=8, max_len=max_len)
    assert row[:start] == [*best, tokenizer.eos_id, *prompt]


def test_a_batch_masks_only_the_answers_and_hides_the_left_padding(tokenizer):
    short = Example("Where?", " Here.", ())
    task = RetrievalTask([EXAMPLE, short], tokenizer, masking_schedule("linear").alpha,
                         answer_length=12, max_len=256, batch_size=2)
    tokens, maskable, padding = task.batch(np.random.default_rng(0))
    assert maskable.sum(dim=1).tolist() == [12, 12]
    assert maskable[:, -12:].all()
    assert (tokens[padding] != tokenizer.pad_id).all()  # padding_mask: True = a real token
    assert (tokens[~padding] == tokenizer.pad_id).all()
    assert not padding[1, 0] and padding[1, -1]  # the short row is padded on the left
    assert not (maskable & ~padding).any()


def test_retrieval_keeps_only_prompts_whose_fact_was_found(tmp_path):
    facts = list(make_facts(24, seed=1).train)
    embedder = text_fixtures.TrigramEmbedder()
    store = build_memory(facts, tmp_path / "memory", embedder, chunk_size=60)
    try:
        examples = retrieve_examples(facts, store, embedder, top_k=2, progress=False)
    finally:
        store.close()
    assert 0 < len(examples) <= 3 * len(facts)
    by_prompt = {p: f for f in facts for p, _ in f.prompts}
    for example in examples:
        fact = by_prompt[example.prompt]
        assert example.answer in dict(fact.prompts).values()
        assert any(s in text for text, _ in example.passages for s in fact.sentences)
        scores = [score for _, score in example.passages]
        assert scores == sorted(scores, reverse=True) and len(scores) <= 2


def test_a_recipe_file_is_checked_key_by_key(tmp_path):
    path = tmp_path / "memory.yaml"
    path.write_text("kind: memory\nfacts: 30\ntrain: {steps: 2}\n")
    recipe = load_memory_recipe(path)
    assert recipe.facts == 30 and recipe.train.steps == 2
    path.write_text("kind: memory\nfactz: 30\n")
    with pytest.raises(ConfigError, match="factz"):
        load_memory_recipe(path)
    path.write_text("kind: memory\nfacts: [30\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_memory_recipe(path)
    with pytest.raises(ValueError, match="corpus_weight"):
        MemoryRecipe(corpus_weight=1.0)


def test_the_shipped_memory_recipe_parses():
    from aios_text.memory_recipe import MEMORY_RECIPE

    recipe = load_memory_recipe(MEMORY_RECIPE)
    assert recipe.init == "" and recipe.embedder == "minilm" and recipe.chunk_sizes == (60,)
    assert recipe.copy_dim > 0


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("memory-run")
    init = model_dir.parent / "model-int8"  # as the shipped model: quantized linear layers
    recipe = MemoryRecipe(init=str(init), facts=16, chunk_sizes=(60,), top_k=2,
                          answer_length=8, batch_size=4, corpus_weight=0.5, copy_dim=8,
                          copy_shift=True, train=TrainConfig(steps=4, warmup=1, checkpoint_every=4,
                                             ema_decay=None))
    metrics = run_memory_recipe(recipe, root / "run", progress=False,
                                embedder=text_fixtures.TrigramEmbedder())
    return init, root / "run", metrics


def test_a_run_fine_tunes_the_initial_model_and_saves_float_and_int8(memory_run):
    from aios_text.model_dir import load_text_model

    init, run, metrics = memory_run
    before, _, _ = load_text_model(init)
    dequantize_linears(before)
    after, _, settings = load_text_model(run / "model")
    copy = {"head.copy.query.weight", "head.copy.key.weight", "head.copy.gate.weight",
            "head.copy.gate.bias", "head.copy.query_prev.weight", "head.copy.key_prev.weight",
            "head.copy.query_next.weight", "head.copy.key_next.weight"}
    assert set(after.state_dict()) == set(before.state_dict()) | copy
    assert settings["copy_dim"] == 8 and settings["copy_shift"] is True
    changed = {name for name, p in before.state_dict().items()
               if not torch.equal(p, after.state_dict()[name])}
    assert {"backbone.blocks.0.attn.qkv.weight", "head.embed.weight"} <= changed
    int8, _, _ = load_text_model(run / "model-int8")
    assert any(isinstance(m, QuantizedLinear) for m in int8.modules())
    assert settings["memory_training"]["facts"] == 16
    assert (run / "model-int8" / "model.yaml").exists()
    assert metrics["examples"] == len(json.loads((run / "examples.json").read_text()))
    assert metrics["base_perplexity_before"] > 1 and metrics["base_perplexity_after"] > 1


def test_a_run_directory_refuses_another_recipe(memory_run):
    from aios.errors import AiosError

    init, run, _ = memory_run
    with pytest.raises(AiosError, match="different recipe"):
        run_memory_recipe(MemoryRecipe(init=str(init), facts=17), run, progress=False,
                          embedder=text_fixtures.TrigramEmbedder())


def test_the_train_command_runs_a_memory_recipe_by_its_kind(monkeypatch, tmp_path):
    import aios_text.memory_recipe as memory_recipe

    seen = {}
    monkeypatch.setattr(memory_recipe, "run_memory_recipe",
                        lambda recipe, out, progress: seen.update(recipe=recipe, out=out) or {})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"kind": "memory", "facts": 40}))
    train_command(str(path), str(tmp_path / "out"), progress=False)
    assert seen["recipe"].facts == 40 and seen["out"] == str(tmp_path / "out")
