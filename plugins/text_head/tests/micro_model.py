"""A micro text model, trained once per test session, for the self-evolution tests.

A helper module rather than fixtures in a conftest.py, which would clash with the core's
`tests/conftest.py` (both would be imported as `conftest`).
"""

from pathlib import Path

import numpy as np
import torch
import yaml
from aios_text.recipe import load_recipe, run_recipe

#: The micro model's words: its training text is these in random order.
BASE_WORDS = ("the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "red", "hat", "big")
_TRAINED: list[Path] = []


def base_text(words: int, seed: int = 0) -> str:
    """Text of the micro model's training distribution."""
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(BASE_WORDS, words)) + "."


def trained_model(tmp_path_factory) -> Path:
    """A model directory trained for a few seconds on `base_text` (once per session)."""
    if _TRAINED:
        return _TRAINED[0]
    root = tmp_path_factory.mktemp("micro")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(120):
        (corpus / f"d{i:03d}.txt").write_text(base_text(40, seed=i))
    recipe = {"corpus": [str(corpus)], "vocab_size": 280,
              "backbone": {"dim": 32, "depth": 2, "heads": 2, "max_len": 160},
              "sequence_length": 32, "batch_size": 16, "eval_windows": 8,
              "train": {"steps": 150, "lr": 0.005, "warmup": 10, "checkpoint_every": 150,
                        "ema_decay": 0.9}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same micro model on every machine: sums in one fixed order
    try:
        run_recipe(load_recipe(root / "recipe.yaml"), root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    _TRAINED.append(root / "run" / "model")
    return _TRAINED[0]


#: The micro model's new domain: its own words, but always in this order (it was trained on
#: them in random order), so the order is what there is to learn. Shuffled, it is base text.
NEW_SENTENCE = "red hat big dog ran to a mat on the cat sat."


def new_text(repeats: int) -> str:
    return " ".join([NEW_SENTENCE] * repeats)


def new_domain(directory: Path, documents: int = 60) -> Path:
    """A folder of .txt files of the new domain."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(documents):
        (directory / f"n{i:03d}.txt").write_text(new_text(4))
    return directory
