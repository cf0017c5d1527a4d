"""The micro text model that the head and memory tests share, trained once per session, and a
small deterministic embedder for memory tests.

A helper module rather than a fixture in a `conftest.py`: that would clash with the core's
`tests/conftest.py` (pytest imports both as `conftest`).
"""

from pathlib import Path

import numpy as np
import torch
import yaml
from aios_text.recipe import load_recipe, run_recipe

from aios.memory.embedding import embed_in_batches

SENTENCE = "the cat sat on the mat. "
_TRAINED: list[Path] = []


def train_micro_model(root: Path, documents: list[str], max_len: int) -> Path:
    """A model directory (int8 twin beside it as `../model-int8`) trained for a few seconds on
    `documents`, single-threaded so every machine gets the same one."""
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(documents):
        (corpus / f"d{i:03d}.txt").write_text(text)
    recipe = {"corpus": [str(corpus)], "vocab_size": 280,
              "backbone": {"dim": 32, "depth": 2, "heads": 2, "max_len": max_len},
              "sequence_length": 32, "batch_size": 16, "eval_windows": 8,
              "train": {"steps": 150, "lr": 0.005, "warmup": 10, "checkpoint_every": 150,
                        "ema_decay": 0.9}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sums in one fixed order
    try:
        run_recipe(load_recipe(root / "recipe.yaml"), root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "run" / "model"


def cat_model(tmp_path_factory) -> Path:
    """The micro model of SENTENCE repeated, trained once per session."""
    if not _TRAINED:
        _TRAINED.append(train_micro_model(tmp_path_factory.mktemp("text"), [SENTENCE * 6] * 120,
                                          max_len=96))
    return _TRAINED[0]


class TrigramEmbedder:
    """Hashed character trigrams of lower-case text: texts naming the same entities are close."""

    name = "trigrams"
    dim = 256

    def embed(self, texts, *, progress=False):
        def batch(part):
            out = np.zeros((len(part), self.dim), np.float32)
            for row, text in enumerate(part):
                text = text.lower()
                for i in range(len(text) - 2):
                    out[row, hash(text[i:i + 3]) % self.dim] += 1.0
            return out

        return embed_in_batches(texts, batch, dim=self.dim, batch_size=16, progress=progress,
                                name=self.name)
