import json

import pytest
import yaml
from aios_text.recipe import TextRecipe, load_recipe, run_recipe

from aios.errors import AiosError, ConfigError

SENTENCES = [
    "the cat sat on the mat and the dog sat on the log.",
    "a bird sang in the tree while the sun rose over the hill.",
    "once upon a time there was a small fox in a big wood.",
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i in range(200):
        (root / f"doc{i:03d}.txt").write_text(" ".join(SENTENCES[(i + j) % 3] for j in range(4)))
    return root


def micro_recipe(corpus_dir, **overrides):
    data = {
        "corpus": [str(corpus_dir)],
        "vocab_size": 300,
        "backbone": {"dim": 32, "depth": 2, "heads": 2, "max_len": 64},
        "sequence_length": 32,
        "batch_size": 16,
        "train": {"steps": 100, "lr": 0.003, "warmup": 5, "checkpoint_every": 50, "ema_decay": 0.9},
        "eval_windows": 16,
        **overrides,
    }
    return data


def write_recipe(tmp_path, data):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("objective", ["diffusion", "autoregressive"])
def test_a_micro_model_trains_its_loss_falls_and_it_is_evaluated(tmp_path, corpus_dir, objective):
    recipe = load_recipe(write_recipe(tmp_path, micro_recipe(corpus_dir, objective=objective)))
    result = run_recipe(recipe, tmp_path / "run", progress=False)
    losses = [loss for _, _, loss in _losses(tmp_path / "run" / "train" / "losses.csv")]
    assert sum(losses[-20:]) / 20 < 0.75 * sum(losses[:10]) / 10
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["objective"] == objective
    assert 1.0 < metrics["validation_perplexity"] < 300
    assert (tmp_path / "run" / "model" / "model.yaml").exists()
    if objective == "diffusion":  # the shipping form: int8 linears, nearly the same score
        assert metrics["int8_validation_perplexity"] == pytest.approx(
            metrics["validation_perplexity"], rel=0.02)
        from aios_text.model_dir import load_text_model

        from aios.quant.linear import QuantizedLinear

        int8, _, settings = load_text_model(tmp_path / "run" / "model-int8")
        assert any(isinstance(m, QuantizedLinear) for m in int8.modules())
        assert settings["objective"] == "diffusion" and settings["sequence_length"] == 32
    assert (tmp_path / "run" / "train" / "loss.png").exists()
    assert result.tokenizer.vocab_size <= 300


def _losses(path):
    rows = path.read_text().splitlines()[1:]
    return [(int(s), t, float(v)) for s, t, v in (r.split(",") for r in rows)]


def test_a_run_directory_resumes_only_with_its_own_recipe(tmp_path, corpus_dir):
    first = load_recipe(write_recipe(tmp_path, micro_recipe(corpus_dir)))
    done = run_recipe(first, tmp_path / "run", progress=False)
    again = run_recipe(first, tmp_path / "run", progress=False)  # resumes: nothing to train
    assert len(_losses(tmp_path / "run" / "train" / "losses.csv")) == 100
    assert again.metrics["validation_nll_nats_per_token"] == \
        done.metrics["validation_nll_nats_per_token"]
    other = TextRecipe(**{**first.__dict__, "vocab_size": 301})
    with pytest.raises(AiosError, match="holds a run of a different recipe"):
        run_recipe(other, tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objectiv": "diffusion"}, "objectiv: unknown key; did you mean 'objective'?"),
        ({"objective": "gan"}, "objective 'gan' is not one of"),
        ({"schedule": "zigzag"}, "unknown masking schedule 'zigzag'"),
        ({"backbone": {"dim": 32, "heads": 3}}, "must split into 3 heads"),
        ({"train": {"steps": "many"}}, "train.steps: expected int, got str 'many'"),
        ({"sequence_length": 64}, "sequence_length 64 needs backbone.max_len > 64"),
    ],
)
def test_recipe_mistakes_name_the_key_and_the_fix(tmp_path, corpus_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(write_recipe(tmp_path, micro_recipe(corpus_dir, **overrides)))


def test_a_missing_recipe_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_recipe(tmp_path / "nope.yaml")


def test_the_default_recipe_round_trips():
    recipe = TextRecipe()
    assert TextRecipe(**{**recipe.__dict__}) == recipe
    assert yaml.safe_load(yaml.safe_dump(recipe.to_dict()))["backbone"]["dim"] == 256


def test_the_packaged_default_recipe_is_valid_and_names_offline_sources():
    from aios_text.recipe import DEFAULT_RECIPE

    recipe = load_recipe(DEFAULT_RECIPE)
    assert set(recipe.corpus) == {"fortunes", "bible-kjv", "shakespeare"}
    assert recipe.objective == "diffusion"


def test_aios_train_text_runs_a_recipe_through_the_cli(tmp_path, corpus_dir, capsys):
    from aios.cli import app as cli

    path = write_recipe(tmp_path, micro_recipe(corpus_dir, train={"steps": 10, "warmup": 2}))
    assert cli.main(["train", "text", "--recipe", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "validation_perplexity" in out and (tmp_path / "run" / "metrics.json").exists()
    assert cli.main(["train", "txet", "--recipe", str(path)]) == 2
    assert "unknown recipe 'txet'; did you mean 'text'?" in capsys.readouterr().err


def test_a_recipe_extends_another_and_overrides_only_what_it_names(tmp_path, corpus_dir):
    write_recipe(tmp_path, micro_recipe(corpus_dir))
    (tmp_path / "ar.yaml").write_text("extends: recipe.yaml\nobjective: autoregressive\n"
                                      "train: {steps: 7}\n")
    base, variant = load_recipe(tmp_path / "recipe.yaml"), load_recipe(tmp_path / "ar.yaml")
    assert variant.objective == "autoregressive" and variant.train.steps == 7
    assert variant.train.lr == base.train.lr and variant.backbone == base.backbone


def test_the_packaged_baseline_recipe_differs_from_the_default_only_in_objective():
    from aios_text.recipe import DEFAULT_RECIPE

    base, baseline = load_recipe(DEFAULT_RECIPE), load_recipe(
        DEFAULT_RECIPE.with_name("autoregressive.yaml"))
    assert baseline.objective == "autoregressive"
    assert TextRecipe(**{**baseline.__dict__, "objective": "diffusion"}) == base


def test_an_extends_cycle_is_a_config_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="a cycle"):
        load_recipe(tmp_path / "a.yaml")
