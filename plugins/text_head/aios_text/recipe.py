"""The text head's training recipe: one YAML file and one command reproduce a model.

`run_recipe` fetches the corpus, trains the tokenizer, tokenizes the splits, builds the backbone
and the text head, trains them with the core's loop, and evaluates the result on held-out text.
Every stage writes into the run directory and is reused when the run is resumed; a directory is
bound to the recipe that started it, so two different runs never mix.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aios.errors import AiosError
from aios.io import write_atomic
from aios.models import Backbone, BackboneConfig
from aios.schedules import masking_schedule
from aios.training import TrainConfig, bind_run, load_recipe_file, read_recipe_data, train
from aios_text.corpus import load_corpus
from aios_text.data import (
    AutoregressiveTask,
    MaskedDiffusionTask,
    TokenStream,
    evaluate_autoregressive,
    evaluate_nelbo,
)
from aios_text.model import TextDiffusionModel, TextHead
from aios_text.model_dir import load_text_model, save_int8_model, save_text_model
from aios_text.tokenizer import TextTokenizer, train_tokenizer

OBJECTIVES = ("diffusion", "autoregressive")


@dataclass(frozen=True)
class TextRecipe:
    """Everything that determines a trained text model."""

    corpus: tuple[str, ...] = ("fortunes", "bible-kjv", "shakespeare")
    vocab_size: int = 4096
    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(dim=256, depth=6, heads=4, max_len=256))
    tie_embeddings: bool = True
    objective: str = "diffusion"
    schedule: str = "linear"
    sequence_length: int = 128
    batch_size: int = 32
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_windows: int = 256

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {OBJECTIVES}")
        masking_schedule(self.schedule)  # raises for an unknown schedule
        if self.sequence_length + 1 > self.backbone.max_len:
            raise ValueError(f"sequence_length {self.sequence_length} needs backbone.max_len > "
                             f"{self.sequence_length}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["corpus"] = list(self.corpus)
        data["train"]["betas"] = list(self.train.betas)
        return data


def load_recipe(path: str | os.PathLike[str]) -> TextRecipe:
    """Parse a recipe file (`aios.training`: `extends` lets a variant such as the
    autoregressive baseline state just what differs)."""
    return load_recipe_file(TextRecipe, path)


@dataclass
class RecipeResult:
    model: TextDiffusionModel
    tokenizer: TextTokenizer
    metrics: dict[str, Any]


def run_recipe(recipe: TextRecipe, out_dir: str | os.PathLike[str], *,
               progress: bool = True) -> RecipeResult:
    """Train (or resume training) the model of `recipe` in `out_dir` and evaluate it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bind_run(out, recipe.to_dict())
    tokenizer, train_stream, validation_stream = _prepare_data(recipe, out, progress)
    model = build_model(recipe, tokenizer)
    alpha = masking_schedule(recipe.schedule).alpha
    if recipe.objective == "diffusion":
        task: Any = MaskedDiffusionTask(train_stream, alpha, tokenizer.mask_id,
                                        recipe.sequence_length, recipe.batch_size)
    else:
        task = AutoregressiveTask(train_stream, recipe.sequence_length, recipe.batch_size)
    started = time.perf_counter()
    result = train(model, [task], recipe.train, out / "train", progress=progress)
    if result.ema is not None:  # the averaged weights are the ones to evaluate and ship
        model.load_state_dict(result.ema, strict=False)
    if recipe.objective == "diffusion":
        nll = evaluate_nelbo(model, validation_stream, alpha, tokenizer.mask_id,
                             length=recipe.sequence_length, max_windows=recipe.eval_windows)
    else:
        nll = evaluate_autoregressive(model, validation_stream, length=recipe.sequence_length,
                                      max_windows=recipe.eval_windows)
    metrics = {
        "objective": recipe.objective,
        "validation_nll_nats_per_token": nll,
        "validation_perplexity": float(torch.tensor(nll).exp()),
        "perplexity_is": "an upper bound (ELBO)" if recipe.objective == "diffusion" else "exact",
        "parameters": sum(p.numel() for p in model.parameters()),
        "backbone_parameters": model.backbone.num_parameters(),
        "tokens_trained": recipe.train.steps * recipe.batch_size * recipe.sequence_length,
        "train_tokens_available": len(train_stream),
        "validation_tokens": len(validation_stream),
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "final_train_loss": result.losses[-1][2] if result.losses else None,
    }
    metrics.update(_save_models(recipe, out, model, tokenizer, validation_stream, alpha))
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomic(out / "metrics.json", lambda f: f.write(text.encode()))
    return RecipeResult(model, tokenizer, metrics)


def _save_models(recipe: TextRecipe, out: Path, model: TextDiffusionModel,
                 tokenizer: TextTokenizer, validation: TokenStream, alpha: Any) -> dict[str, Any]:
    """`out/model` (float weights); for diffusion also `out/model-int8`, the form that ships,
    quantized by the best installed quantizer (native over reference), with its score."""
    facts = {"objective": recipe.objective, "corpus": list(recipe.corpus),
             "sequence_length": recipe.sequence_length}
    save_text_model(out / "model", model, tokenizer, schedule=recipe.schedule, **facts)
    saved: dict[str, Any] = {"model_dir": str(out / "model")}
    if recipe.objective != "diffusion" or not save_int8_model(
            out / "model-int8", model, tokenizer, schedule=recipe.schedule, **facts):
        return saved
    int8, _, _ = load_text_model(out / "model-int8")
    nll = evaluate_nelbo(int8, validation, alpha, tokenizer.mask_id,
                         length=recipe.sequence_length, max_windows=recipe.eval_windows)
    saved.update({"int8_model_dir": str(out / "model-int8"),
                  "int8_validation_perplexity": float(torch.tensor(nll).exp())})
    return saved


def build_model(recipe: TextRecipe, tokenizer: TextTokenizer) -> TextDiffusionModel:
    torch.manual_seed(recipe.train.seed)
    head = TextHead(tokenizer.vocab_size, recipe.backbone.dim, tokenizer.mask_id,
                    tie=recipe.tie_embeddings)
    return TextDiffusionModel(Backbone(recipe.backbone), head)


def _prepare_data(recipe: TextRecipe, out: Path,
                  progress: bool) -> tuple[TextTokenizer, TokenStream, TokenStream]:
    tokenizer_path = out / "tokenizer.json"
    streams = {split: out / f"{split}.tokens.npy" for split in ("train", "validation")}
    if tokenizer_path.exists() and all(p.exists() for p in streams.values()):
        return (TextTokenizer.load(tokenizer_path), TokenStream.load(streams["train"]),
                TokenStream.load(streams["validation"]))
    documents = load_corpus(recipe.corpus, out / "corpus-cache")
    by_split = {split: [d for d in documents if d.split == split] for split in streams}
    if not by_split["train"] or not by_split["validation"]:
        raise AiosError(f"the corpus {list(recipe.corpus)} has {len(documents)} documents, too "
                        "few for both a training and a validation split; add text")
    tokenizer = train_tokenizer((d.text for d in by_split["train"]), recipe.vocab_size)
    tokenizer.save(tokenizer_path)
    loaded = {}
    for split, path in streams.items():
        stream = TokenStream.from_documents(by_split[split], tokenizer, progress=progress)
        stream.save(path)
        loaded[split] = stream
    return tokenizer, loaded["train"], loaded["validation"]


DEFAULT_RECIPE = Path(__file__).with_name("recipes") / "default.yaml"


def train_command(recipe: str | None, out: str, progress: bool = True) -> dict[str, Any]:
    """What `aios train text` runs: the given recipe file, or the default one. A file with
    `kind: memory` is the retrieval-augmented fine-tuning recipe (`aios_text.memory_recipe`);
    `kind: adapt` adapts a pretrained AR model into block diffusion (`aios_text.adapt`)."""
    path = Path(recipe) if recipe else DEFAULT_RECIPE
    if not path.exists() and (DEFAULT_RECIPE.parent / path.name).exists():
        path = DEFAULT_RECIPE.parent / path.name  # a shipped recipe by its file name
    kind = read_recipe_data(path, ()).get("kind")
    if kind == "memory":
        from aios_text.memory_recipe import load_memory_recipe, run_memory_recipe

        return run_memory_recipe(load_memory_recipe(path), out, progress=progress)
    if kind == "adapt":
        from aios_text.adapt.recipe import load_adapt_recipe, run_adapt_recipe

        return run_adapt_recipe(load_adapt_recipe(path), out, progress=progress)
    return run_recipe(load_recipe(path), out, progress=progress).metrics
