"""A micro text model, trained once per test session, for the self-evolution tests.

A helper module rather than fixtures in a conftest.py, which would clash with the core's
`tests/conftest.py` (both would be imported as `conftest`).
"""

from pathlib import Path

import numpy as np
from text_fixtures import train_micro_model

#: The micro model's words: its training text is these in random order.
BASE_WORDS = ("the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "red", "hat", "big")
_TRAINED: list[Path] = []


def base_text(words: int, seed: int = 0) -> str:
    """Text of the micro model's training distribution."""
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(BASE_WORDS, words)) + "."


def trained_model(tmp_path_factory) -> Path:
    """A model directory trained for a few seconds on `base_text` (once per session)."""
    if not _TRAINED:
        documents = [base_text(40, seed=i) for i in range(120)]
        _TRAINED.append(train_micro_model(tmp_path_factory.mktemp("micro"), documents,
                                          max_len=160))
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
