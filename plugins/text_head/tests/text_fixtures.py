"""The micro text model that the head and memory tests share, trained once per session.

A helper module rather than a fixture in a `conftest.py`: that would clash with the core's
`tests/conftest.py` (pytest imports both as `conftest`).
"""

from pathlib import Path

import yaml
from aios_text.recipe import load_recipe, run_recipe

SENTENCE = "the cat sat on the mat. "
_TRAINED: list[Path] = []


def cat_model(tmp_path_factory) -> Path:
    """A model directory trained for a few seconds on SENTENCE repeated (its int8 twin is
    `../model-int8`)."""
    if _TRAINED:
        return _TRAINED[0]
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
    _TRAINED.append(root / "run" / "model")
    return _TRAINED[0]
