"""`aios eval text` on micro models: the diffusion bound, the AR baseline, their ratio."""

import math

import pytest
import yaml
from aios_text.evaluate import evaluate_command
from aios_text.recipe import load_recipe, run_recipe

from aios.errors import ConfigError

TEXT = "the cat sat on the mat and the dog sat on the log. "


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(120):
        (corpus / f"d{i:03d}.txt").write_text(TEXT * 5)
    recipe = {"corpus": [str(corpus)], "vocab_size": 280,
              "backbone": {"dim": 32, "depth": 2, "heads": 2, "max_len": 64},
              "sequence_length": 32, "batch_size": 16, "eval_windows": 8,
              "train": {"steps": 60, "lr": 0.005, "warmup": 5, "checkpoint_every": 60}}
    (root / "diffusion.yaml").write_text(yaml.safe_dump(recipe))
    (root / "ar.yaml").write_text("extends: diffusion.yaml\nobjective: autoregressive\n")
    for name in ("diffusion", "ar"):
        run_recipe(load_recipe(root / f"{name}.yaml"), root / name, progress=False)
    (root / "held-out.txt").write_text(TEXT * 40)
    return root


def test_the_model_and_its_baseline_are_scored_on_the_same_held_out_text(runs):
    metrics = evaluate_command(model=str(runs / "diffusion" / "model"),
                               baseline=str(runs / "ar" / "model"), progress=False)
    assert metrics["model_objective"] == "diffusion"
    assert metrics["baseline_objective"] == "autoregressive"
    assert metrics["model_perplexity"] == pytest.approx(
        math.exp(metrics["model_nll_nats_per_token"]), rel=1e-3)
    assert metrics["perplexity_ratio_model_to_baseline"] == pytest.approx(
        metrics["model_perplexity"] / metrics["baseline_perplexity"], rel=1e-3)
    # The validation split agrees with what training reported for the same model.
    assert metrics["tokens_scored"] > 0


def test_other_text_can_be_scored_and_bad_data_is_a_config_error(runs):
    own = evaluate_command(model=str(runs / "ar" / "model"), progress=False)
    other = evaluate_command(model=str(runs / "ar" / "model"),
                             data=[str(runs / "held-out.txt")], progress=False)
    assert other["data"] == str(runs / "held-out.txt") and other["model_perplexity"] > 1
    assert own["model_perplexity"] != other["model_perplexity"]
    with pytest.raises(ConfigError, match="unknown corpus source 'nope'"):
        evaluate_command(model=str(runs / "ar" / "model"), data=["nope"], progress=False)


def test_a_baseline_with_another_tokenizer_is_refused(runs, tmp_path):
    import shutil

    from aios_text.tokenizer import train_tokenizer

    other = tmp_path / "other"
    shutil.copytree(runs / "ar" / "model", other)
    train_tokenizer(["completely different words here"] * 50, 270).save(other / "tokenizer.json")
    with pytest.raises(ConfigError, match="different tokenizer"):
        evaluate_command(model=str(runs / "diffusion" / "model"), baseline=str(other),
                         progress=False)


def test_aios_eval_text_prints_the_table(runs, capsys):
    from aios.cli import app as cli

    assert cli.main(["eval", "text", "--model", str(runs / "diffusion" / "model"),
                     "--baseline", str(runs / "ar" / "model")]) == 0
    out = capsys.readouterr().out
    assert "model_perplexity" in out and "perplexity_ratio_model_to_baseline" in out


def test_generative_perplexity_of_held_out_windows_equals_the_exact_ar_perplexity(runs):
    import numpy as np
    import torch
    from aios_text.data import TokenStream, evaluate_autoregressive
    from aios_text.evaluate import generative_perplexity
    from aios_text.model_dir import load_text_model

    model, tokenizer, _ = load_text_model(runs / "ar" / "model")
    ids = tokenizer.encode(TEXT * 6)
    windows = [ids[i:i + 33] for i in range(0, len(ids) - 33, 33)][:4]
    exact = evaluate_autoregressive(model, TokenStream(np.concatenate(windows)), length=32,
                                    max_windows=4)
    assert generative_perplexity(model, windows, [1] * len(windows)) == pytest.approx(
        float(torch.tensor(exact).exp()), rel=1e-4)
    # Scoring starts after the prompt: a longer prompt scores fewer, later tokens.
    assert generative_perplexity(model, windows, [20] * len(windows)) != pytest.approx(
        float(torch.tensor(exact).exp()), rel=1e-4)
