"""Retrieval-augmented training: teach a text model to use the memory placed in its context.

A pretrained model has never seen passages in front of a question, and the invented facts of
`aios_text.facts` are in no training text, so it cannot answer questions about them; this recipe
fine-tunes it on examples laid out exactly as generation lays them out (`aios_text.passages`):
the passages that the real retriever (embedder + store) returns for a question, then the
question, then an answer that only those passages hold. Only the answer is masked, so the loss
teaches reading, not the facts: the held-out facts, used for scoring, never appear in training
and exist only in the memory at test time. A share of steps stays on the pretraining corpus so
the model keeps its general skill.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aios.config import parse_dataclass
from aios.errors import AiosError, ConfigError
from aios.io import write_atomic
from aios.memory import Passage
from aios.quant import dequantize_linears
from aios.schedules import masking_schedule
from aios.training import TrainConfig, bind_run, read_recipe_data, train
from aios_text.data import MaskedDiffusionTask, TokenStream, evaluate_nelbo
from aios_text.diffusion import Alpha, mdlm_loss
from aios_text.facts import Fact, make_facts, write_fact_documents
from aios_text.inference import model_path
from aios_text.model import CopyHead, TextDiffusionModel
from aios_text.model_dir import load_text_model, save_int8_model, save_text_model
from aios_text.passages import context_ids
from aios_text.tokenizer import TextTokenizer

#: The recipe file of the shipped memory-trained model.
MEMORY_RECIPE = Path(__file__).with_name("recipes") / "memory.yaml"


@dataclass(frozen=True)
class MemoryRecipe:
    """Everything that determines a memory-trained model; `init` is the model it starts from
    ("" for the shipped default model)."""

    init: str = ""
    facts: int = 2000
    held_out: float = 0.25
    fact_seed: int = 0
    embedder: str = "minilm"
    chunk_sizes: tuple[int, ...] = (60, 200)
    top_k: int = 5
    lexical_weight: float = 0.0  # the retriever's word re-ranking (aios.memory.rerank)
    answer_length: int = 24
    batch_size: int = 16
    corpus_weight: float = 0.4
    copy_dim: int = 0  # > 0: give the model a copy head of this width (if it has none)
    copy_shift: bool = False  # the copy head also compares neighbouring positions (induction)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.corpus_weight < 1:
            raise ValueError(f"corpus_weight is the share of steps on the corpus, in [0, 1), "
                             f"not {self.corpus_weight}")
        if self.answer_length < 4:
            raise ValueError(f"answer_length must leave room for an answer, got "
                             f"{self.answer_length}")
        if self.copy_dim < 0:
            raise ValueError(f"copy_dim is the copy head's width (0 = none), got {self.copy_dim}")
        if not self.chunk_sizes or min(self.chunk_sizes) < 20:
            raise ValueError(f"chunk_sizes are characters per passage (>= 20), got "
                             f"{self.chunk_sizes}")

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": "memory", **asdict(self)}
        data["chunk_sizes"] = list(self.chunk_sizes)
        data["train"]["betas"] = list(self.train.betas)
        return data


def load_memory_recipe(path: str | os.PathLike[str]) -> MemoryRecipe:
    """Parse a memory recipe file (its `kind: memory` line says which recipe it is)."""
    data = read_recipe_data(Path(path), ())
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(document)", "expected a mapping of recipe keys",
                          "see aios_text/recipes/memory.yaml")
    data = {k: v for k, v in data.items() if k != "kind"}
    return parse_dataclass(MemoryRecipe, data, source=str(path))


@dataclass(frozen=True)
class Example:
    """One retrieval-augmented example: passages (text, score) as retrieved, best first."""

    prompt: str
    answer: str
    passages: tuple[tuple[str, float], ...]


def retrieve_examples(facts: list[Fact], store: Any, embedder: Any, top_k: int,
                      progress: bool = True, lexical_weight: float = 0.0,
                      min_score: float = -1.0) -> list[Example]:
    """Each fact's prompts with the passages the memory returns for them; prompts whose fact
    was not retrieved are dropped (their answer would not be in the context to read)."""
    from aios.memory import MemoryConditioner
    from aios.protocols import EngineContext

    conditioner = MemoryConditioner(top_k=top_k, min_score=min_score,
                                    lexical_weight=lexical_weight)
    context = EngineContext(head=None, storage=store, embedder=embedder)  # type: ignore[arg-type]
    examples = []
    for fact in tqdm(facts, desc="retrieving", unit="fact", disable=not progress):
        for prompt, answer in fact.prompts:
            found = conditioner.retrieve(prompt, context)
            if any(s in p.text for p in found for s in fact.sentences):
                examples.append(Example(prompt, answer,
                                        tuple((p.text, p.score) for p in found)))
    return examples


def build_memory(facts: list[Fact], directory: Path, embedder: Any, chunk_size: int, *,
                 forms: Sequence[int] | None = None, chunk_overlap: int = 0) -> Any:
    """A store holding `facts` as documents (in the sentence `forms` given, default all),
    filled by the real ingestion path."""
    from aios.memory import ingest_into, open_memory

    if directory.exists():
        shutil.rmtree(directory)
    write_fact_documents(facts, directory / "docs", forms=forms)
    ingest_into(directory / "store", embedder, [directory / "docs"], chunk_size=chunk_size,
                chunk_overlap=chunk_overlap, progress=False)
    return open_memory(directory / "store", embedder.dim)


def example_row(tokenizer: TextTokenizer, example: Example, answer_length: int,
                max_len: int) -> tuple[list[int], int]:
    """`[context] [prompt] [answer] <eos>...` (the answer region padded with eos to
    `answer_length`, as the head's masks would be filled) and the answer region's start."""
    prompt = tokenizer.encode(example.prompt)
    answer = tokenizer.encode(example.answer)[: answer_length - 1]
    answer += [tokenizer.eos_id] * (answer_length - len(answer))
    budget = max_len - len(prompt) - answer_length
    context = context_ids(tokenizer, [Passage(t, s) for t, s in example.passages], budget)
    row = context + prompt + answer
    return row, len(row) - answer_length



@dataclass
class RetrievalTask:
    """The MDLM loss on the answers of retrieval-augmented examples (context and prompt are
    never masked, as at generation)."""

    examples: list[Example]
    tokenizer: TextTokenizer
    alpha: Alpha
    answer_length: int
    max_len: int
    batch_size: int = 16
    name: str = "memory"
    weight: float = 1.0

    def batch(self, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        picked = rng.choice(len(self.examples), size=self.batch_size, replace=False)
        rows = [example_row(self.tokenizer, self.examples[i], self.answer_length, self.max_len)
                for i in picked]
        width = max(len(r) for r, _ in rows)
        tokens = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        maskable = torch.zeros((len(rows), width), dtype=torch.bool)
        for n, (row, start) in enumerate(rows):
            tokens[n, width - len(row):] = torch.tensor(row)
            maskable[n, width - len(row) + start:] = True
        return tokens, maskable, tokens != self.tokenizer.pad_id

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor],
             generator: torch.Generator) -> Tensor:
        tokens, maskable, padding = batch
        return mdlm_loss(model, tokens, self.alpha, self.tokenizer.mask_id, generator,
                         maskable=maskable, padding_mask=padding)


def run_memory_recipe(recipe: MemoryRecipe, out_dir: str | os.PathLike[str], *,
                      progress: bool = True, embedder: Any = None) -> dict[str, Any]:
    """Fine-tune `recipe.init` to read memory; writes `out/model`, `out/model-int8` and
    `out/metrics.json` (base-corpus perplexity before and after, to show what it cost).

    `embedder` replaces the recipe's named one (tests pass a small deterministic one)."""
    from aios.memory import build_embedder
    from aios_text.evaluate import held_out_stream

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bind_run(out, recipe.to_dict())
    init = model_path(recipe.init)
    model, tokenizer, settings = load_text_model(init)
    dequantize_linears(model)  # the shipped model is int8; training needs float layers
    if settings.get("objective", "diffusion") != "diffusion":
        raise AiosError(f"{init} is not a diffusion model; memory training fine-tunes one")
    if recipe.copy_dim and model.head.copy is None:
        torch.manual_seed(recipe.train.seed)
        model.head.copy = CopyHead(model.backbone.config.dim, recipe.copy_dim)
    if recipe.copy_shift and model.head.copy is not None and not model.head.copy.shift:
        torch.manual_seed(recipe.train.seed + 1)
        model.head.copy.add_shift()
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    max_len = model.backbone.config.max_len
    facts = make_facts(recipe.facts, held_out=recipe.held_out, seed=recipe.fact_seed)
    examples = cached_examples(out / "examples.json", list(facts.train),
                               embedder or build_embedder(recipe.embedder),
                               chunk_sizes=recipe.chunk_sizes, top_k=recipe.top_k,
                               lexical_weight=recipe.lexical_weight, progress=progress)
    tasks: list[Any] = [RetrievalTask(examples, tokenizer, alpha, recipe.answer_length, max_len,
                                      recipe.batch_size, weight=1 - recipe.corpus_weight)]
    length = int(settings.get("sequence_length", 128))
    corpus = _corpus_stream(tokenizer, settings, out, progress)
    validation = held_out_stream(tokenizer, settings, None, progress)
    before = evaluate_nelbo(model, validation, alpha, tokenizer.mask_id, length=length)
    if recipe.corpus_weight > 0:
        tasks.append(MaskedDiffusionTask(corpus, alpha, tokenizer.mask_id, length,
                                         recipe.batch_size, weight=recipe.corpus_weight))
    started = time.perf_counter()
    result = train(model, tasks, recipe.train, out / "train", progress=progress)
    if result.ema is not None:
        model.load_state_dict(result.ema, strict=False)
    after = evaluate_nelbo(model, validation, alpha, tokenizer.mask_id, length=length)
    _save(model, tokenizer, settings, recipe, out)
    metrics = {
        "init": str(init),
        "examples": len(examples),
        "train_facts": len(facts.train),
        "held_out_facts": len(facts.held_out),
        "base_perplexity_before": float(np.exp(before)),
        "base_perplexity_after": float(np.exp(after)),
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "model_dir": str(out / "model"),
        "int8_model_dir": str(out / "model-int8"),
    }
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomic(out / "metrics.json", lambda f: f.write(text.encode()))
    return metrics


def cached_examples(path: Path, facts: list[Fact], embedder: Any, *,
                    chunk_sizes: Sequence[int], top_k: int, lexical_weight: float,
                    min_score: float = -1.0, forms: Sequence[int] | None = None,
                    chunk_overlap: int = 0, progress: bool = True) -> list[Example]:
    """The retrieved examples of `facts` (stored in sentence `forms`, one store per chunk
    size under `path`'s folder), computed once and kept in `path` (retrieval is the slow
    part); a cached file is read without `embedder`."""
    if path.exists():
        return [Example(e["prompt"], e["answer"], tuple(map(tuple, e["passages"])))
                for e in json.loads(path.read_text())]
    examples: list[Example] = []
    for size in chunk_sizes:
        store = build_memory(facts, path.parent / f"memory-{size}", embedder, size,
                             forms=forms, chunk_overlap=chunk_overlap)
        try:
            examples += retrieve_examples(facts, store, embedder, top_k, progress,
                                          lexical_weight, min_score=min_score)
        finally:
            store.close()
    if not examples:
        raise AiosError("the memory retrieved no fact for its questions; check the embedder")
    data = [{"prompt": e.prompt, "answer": e.answer, "passages": e.passages} for e in examples]
    text = json.dumps(data)
    write_atomic(path, lambda f: f.write(text.encode()))
    return examples


def _corpus_stream(tokenizer: TextTokenizer, settings: dict[str, Any], out: Path,
                   progress: bool) -> TokenStream:
    """The training split of the corpus the model was pretrained on, with its tokenizer."""
    from aios_text.corpus import load_corpus
    from aios_text.evaluate import corpus_cache

    path = out / "train.tokens.npy"
    if path.exists():
        return TokenStream.load(path)
    sources = settings.get("corpus")
    if not sources:
        raise AiosError("the initial model does not record its corpus; set corpus_weight: 0")
    documents = [d for d in load_corpus(sources, corpus_cache()) if d.split == "train"]
    stream = TokenStream.from_documents(documents, tokenizer, progress=progress)
    stream.save(path)
    return stream


def _save(model: TextDiffusionModel, tokenizer: TextTokenizer, settings: dict[str, Any],
          recipe: MemoryRecipe, out: Path) -> None:
    facts = {key: settings[key] for key in ("objective", "corpus", "sequence_length")
             if key in settings}
    facts["memory_training"] = {"facts": recipe.facts, "held_out": recipe.held_out,
                                "fact_seed": recipe.fact_seed, "embedder": recipe.embedder,
                                "lexical_weight": recipe.lexical_weight,
                                "answer_length": recipe.answer_length}
    schedule = settings.get("schedule", "linear")
    save_text_model(out / "model", model, tokenizer, schedule=schedule, **facts)
    save_int8_model(out / "model-int8", model, tokenizer, schedule=schedule, **facts)
