"""The micro text model that the head and memory-training tests share (trained once)."""

import pytest
import yaml
from aios_text.recipe import load_recipe, run_recipe

SENTENCE = "the cat sat on the mat. "


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(120):
        (corpus / f"d{i:03d}.txt").write_text(SENTENCE * 6)
    recipe = {"corpus": [str(corpus)], "vocab_size": 280,
              "backbone": {"dim": 32, "depth": 2, "heads": 2, "max_len": 96},
              "sequence_length": 32, "batch_size": 16, "eval_windows": 8,
              "train": {"steps": 150, "lr": 0.005, "warmup": 10, "checkpoint_every": 150,
                        "ema_decay": 0.9}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_recipe(load_recipe(root / "recipe.yaml"), root / "run", progress=False)
    return root / "run" / "model"
