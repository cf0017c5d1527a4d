"""The text model for generation, in NumPy: what the head runs, without importing torch.

It reads the same model directory as `aios_text.model_dir.load_text_model` (which builds the
torch model for training and evaluation) and computes the same logits on top of
`aios.models.ArrayBackbone`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import AiosError
from aios.models import ArrayBackbone, ArrayKVCache, load_arrays, read_model_config
from aios_text.tokenizer import TextTokenizer

#: The backbone's modality id for text (images and audio use others).
TEXT_MODALITY = 0
TOKENIZER_FILE = "tokenizer.json"

#: The smallest probability the copy head's mixture gives (its log stands in for log 0).
PROBABILITY_FLOOR = 1e-30
#: The models that ship with the pack, by name (each a model directory with its MODEL_CARD.md).
SHIPPED_MODELS = Path(__file__).with_name("models")
#: The model the head uses when none is named: pretrained on the corpus, int8.
DEFAULT_MODEL = SHIPPED_MODELS / "default"


def model_path(model: str | os.PathLike[str] = "") -> Path:
    """The model directory a config value names: "" is the shipped default, the bare name of a
    shipped model (`default`, `memory`) is that model, anything else is a path (`~` expanded)."""
    text = os.fspath(model)
    if not text:
        return DEFAULT_MODEL
    path = Path(os.path.expanduser(text))
    if not path.exists() and "/" not in text and (SHIPPED_MODELS / text).is_dir():
        return SHIPPED_MODELS / text
    return path


def shipped_models() -> list[str]:
    """Names of the models that ship with the pack."""
    return sorted(p.name for p in SHIPPED_MODELS.iterdir() if (p / "model.yaml").exists())


@dataclass(frozen=True)
class ArrayCopyHead:
    """The copy head's weights (see `aios_text.model.CopyHead`): query and key (copy_dim, dim),
    gate (1, dim) and its bias (1,)."""

    query: np.ndarray
    key: np.ndarray
    gate: np.ndarray
    gate_bias: np.ndarray
    query_prev: np.ndarray | None = None  # with `shift`: projections of the previous state
    key_prev: np.ndarray | None = None
    query_next: np.ndarray | None = None  # ... and of the next one
    key_next: np.ndarray | None = None

    def parameters(self) -> int:
        """Every weight it holds (the neighbours' projections included, when it has them)."""
        return sum(w.size for w in (getattr(self, f.name) for f in fields(self))
                   if w is not None)

    @classmethod
    def from_weights(cls, weights: dict[str, np.ndarray]) -> ArrayCopyHead:
        return cls(weights["copy.query.weight"], weights["copy.key.weight"],
                   weights["copy.gate.weight"], weights["copy.gate.bias"],
                   *(weights.get(f"copy.{name}.weight")
                     for name in ("query_prev", "key_prev", "query_next", "key_next")))

    def __call__(self, hidden: np.ndarray, logits: np.ndarray, tokens: np.ndarray,
                 sources: np.ndarray) -> np.ndarray:
        """log((1 - g) softmax(logits) + g p_copy), p_copy pointing at `sources` positions."""
        scale = 1.0 / np.sqrt(self.query.shape[0])
        queries, keys = hidden @ self.query.T, hidden @ self.key.T
        if (self.query_prev is not None and self.key_prev is not None
                and self.query_next is not None and self.key_next is not None):
            previous = np.pad(hidden, ((0, 0), (1, 0), (0, 0)))[:, :-1]
            following = np.pad(hidden, ((0, 0), (0, 1), (0, 0)))[:, 1:]
            queries = np.concatenate([queries, previous @ self.query_prev.T,
                                      following @ self.query_next.T], axis=-1)
            keys = np.concatenate([keys, previous @ self.key_prev.T,
                                   following @ self.key_next.T], axis=-1)
        probs = softmax(logits)
        for b in range(len(tokens)):  # rows differ in what they can copy
            if not sources[b].any():
                continue
            scores = np.where(sources[b][None, :], queries[b] @ keys[b].T * scale, -1e9)
            pointer = softmax(scores)
            ids, where = np.unique(tokens[b], return_inverse=True)
            copy = pointer @ (where.reshape(-1)[:, None] == np.arange(len(ids))).astype(
                np.float32)
            gate = 1.0 / (1.0 + np.exp(-(hidden[b] @ self.gate.T + self.gate_bias)))
            probs[b] *= 1.0 - gate
            probs[b][:, ids] += gate * copy
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(probs, PROBABILITY_FLOOR)).astype(np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ArrayTextModel:
    """Token embeddings into the backbone, logits out; the mask token is never predicted."""

    def __init__(self, backbone: ArrayBackbone, embedding: np.ndarray,
                 projection: np.ndarray | None, mask_id: int,
                 copy: ArrayCopyHead | None = None) -> None:
        self.backbone = backbone
        self.embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self.projection = self.embedding if projection is None else np.ascontiguousarray(
            projection, dtype=np.float32)
        self.mask_id = mask_id
        self.copy = copy

    def __call__(self, tokens: np.ndarray, t: np.ndarray, *,
                 padding_mask: np.ndarray | None = None,
                 attention_mask: np.ndarray | None = None,
                 past: ArrayKVCache | None = None) -> np.ndarray:
        if self.copy is not None and past is not None:
            raise AiosError("a model with a copy head runs without a key/value cache: the "
                            "cached positions' tokens would be out of its reach")
        hidden = self.backbone(self.embedding[tokens], t, TEXT_MODALITY,
                               padding_mask=padding_mask, attention_mask=attention_mask,
                               past=past)
        logits = self.logits(hidden)
        if self.copy is None:
            return logits
        sources = tokens != self.mask_id
        if padding_mask is not None:
            sources &= padding_mask
        logits = self.copy(hidden, logits, tokens, sources)
        logits[..., self.mask_id] = -np.inf
        return logits

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """The vocabulary logits alone (the copy head, when there is one, mixes in after)."""
        logits = hidden @ self.projection.T
        logits[..., self.mask_id] = -np.inf
        return logits

    def parameters(self) -> int:
        """The head's own parameters (embedding, untied projection, copy head)."""
        count = self.embedding.size
        if self.projection is not self.embedding:
            count += self.projection.size
        if self.copy is not None:
            count += self.copy.parameters()
        return count

    def cache(self, tokens: np.ndarray, t: np.ndarray, *, padding_mask: np.ndarray,
              past: ArrayKVCache | None) -> ArrayKVCache:
        """Run `tokens` (placed after `past`) and return the cache extended by them."""
        _, cache = self.backbone(self.embedding[tokens], t, TEXT_MODALITY,
                                 padding_mask=padding_mask, past=past, return_cache=True)
        return cache


def text_settings(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The text head's entry of a model directory's `model.yaml` (both loaders read it)."""
    settings = read_model_config(directory)["heads"].get("text")
    if settings is None:
        raise AiosError(f"{directory} holds no text head; train one with `aios train text`")
    return settings


def load_array_text_model(directory: str | os.PathLike[str]
                          ) -> tuple[ArrayTextModel, TextTokenizer, dict[str, Any]]:
    """The NumPy model, its tokenizer and the head's settings from a model directory."""
    directory = Path(directory)
    settings = text_settings(directory)
    backbone = ArrayBackbone.load(directory)
    weights = load_arrays(directory / "text.arrow")
    if "embed.weight" not in weights:
        raise AiosError(f"{directory / 'text.arrow'} lacks embed.weight; restore the model "
                        "directory")
    projection = None if settings.get("tie", True) else weights.get("project.weight")
    copy = ArrayCopyHead.from_weights(weights) if settings.get("copy_dim") else None
    model = ArrayTextModel(backbone, weights["embed.weight"], projection,
                           int(settings["mask_id"]), copy)
    try:
        tokenizer = TextTokenizer.load(directory / settings.get("tokenizer", TOKENIZER_FILE))
    except ValueError as exc:
        raise AiosError(str(exc)) from exc
    return model, tokenizer, settings
