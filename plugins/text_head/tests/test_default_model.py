"""The model that ships with the pack: present, small, int8, and it writes English."""

import subprocess
import sys
from pathlib import Path

import yaml
from aios_text.head import TextDiffusionHead
from aios_text.inference import DEFAULT_MODEL
from aios_text.model_dir import load_text_model

from aios.engine import ArrowEngine
from aios.quant.linear import QuantizedLinear


def test_the_shipped_model_is_int8_and_under_25_mb():
    files = list(DEFAULT_MODEL.iterdir())
    assert {"model.yaml", "backbone.arrow", "text.arrow", "tokenizer.json",
            "MODEL_CARD.md"} <= {f.name for f in files}
    assert sum(f.stat().st_size for f in files) < 25 * 2**20
    model, tokenizer, settings = load_text_model(DEFAULT_MODEL)
    linears = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert linears and all(m.weight_q.bits == 8 for m in linears)
    assert settings["objective"] == "diffusion" and tokenizer.vocab_size == settings["vocab_size"]


def test_the_model_card_states_the_recipe_and_the_scores():
    card = (DEFAULT_MODEL / "MODEL_CARD.md").read_text()
    config = yaml.safe_load((DEFAULT_MODEL / "model.yaml").read_text())
    assert f"dim {config['backbone']['dim']}" in card
    assert "aios train text" in card and "perplexity" in card


def test_the_default_head_continues_a_prompt_in_words():
    engine = ArrowEngine.from_config(None, overrides=["head.name=text",
                                                     "sampler.name=low-confidence"])
    assert isinstance(engine.head, TextDiffusionHead) and engine.head.tokenizer.vocab_size > 1000
    text = engine.generate("Once upon a time", seed=0, num_steps=24, length=24)
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time") + 10
    words = text.split()
    assert sum(w.strip(".,;:!?'\"").isalpha() for w in words) >= 0.7 * len(words)


def test_aios_generate_prints_text_from_a_fresh_process():
    aios = Path(sys.executable).with_name("aios")
    result = subprocess.run([str(aios), "generate", "Once upon a time", "--steps", "8",
                             "--length", "16", "--seed", "0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Once upon a time")


def test_the_shipped_memory_model_answers_from_a_passage_it_never_trained_on(tmp_path):
    """The memory model copies an invented answer out of retrieved memory; the default model,
    given the same passage, does not (the benchmark's held-out fact that it gets right)."""
    facts = tmp_path / "facts.txt"
    facts.write_text("The river Brandquos flows into the Coux Sea.\n\n"
                     "Quisnour Stearhul was born in Grurnpux.\n")
    store = tmp_path / "memory"
    from aios.cli import app as cli

    assert cli.main(["--set", "memory.embedder=minilm", "--set", "memory.chunk_size=60",
                     "memory", "add",
                     "--path", str(store), str(facts)]) == 0
    answers = {}
    for model in ("memory", "default"):
        overrides = [f"head.model={model}", "sampler.name=low-confidence",
                     f"memory.path={store}", "memory.embedder=minilm"]
        with ArrowEngine.from_config(None, overrides=overrides) as engine:
            answers[model] = engine.diffuse("The river Brandquos flows into", seed=0,
                                            num_steps=16, length=16, memory_guided=True)
    assert "Coux Sea" in answers["memory"]
    assert "Coux" not in answers["default"]


def test_the_shipped_memory_model_answers_most_held_out_facts_from_memory(tmp_path):
    """The benchmark's measure on a small scale: held-out facts (never trained on) stored in a
    memory among others, asked through the engine with the default conditioner; the model must
    put the answer in its generation for most of them (34 of these 45 when written; the
    benchmark measures 0.907 on 150 prompts with all 2,000 facts in memory)."""
    from aios_text.facts import make_facts
    from aios_text.memory_eval import exact_match
    from aios_text.memory_recipe import build_memory

    from aios.memory.embedding import build_embedder

    facts = make_facts(2000, held_out=0.25, seed=0)  # the split the model was trained with
    build_memory(list(facts.held_out[:150]), tmp_path / "memory", build_embedder("minilm"),
                 chunk_size=60).close()
    overrides = ["head.model=memory", "sampler.name=low-confidence", "memory.embedder=minilm",
                 f"memory.path={tmp_path / 'memory' / 'store'}",
                 "conditioners=[{name: memory}]"]
    with ArrowEngine.from_config(None, overrides=overrides) as engine:
        result = exact_match(lambda prompt: engine.diffuse(prompt, seed=0, num_steps=32,
                                                           length=32, memory_guided=True),
                             facts.held_out[:15], progress=False)
    assert len(result.generations) == 45
    assert result.rate >= 0.6, result.generations
