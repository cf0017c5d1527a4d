"""`aios evolve` for the text head: adapt the model to new text, keep the adapter only if it helps.

The balanced rule: an adapter (an `AdapterMethod`: a side network, level 1, or LoRA, level 2;
sizes from the `evolve` config) is trained on the new text's training split, with a share of
the model's own training text replayed beside it so that it does not forget. It is kept only
when both

- the held-out perplexity on the new text falls by at least `min_gain` (e.g. 0.05 = 5%), and
- the perplexity on a fixed check set of the base domain (the model's validation split) rises by
  at most `max_base_loss` (e.g. 0.02 = 2%).

Otherwise it is discarded. Either way the decision and the four scores are appended to
`evolution.log` (JSON lines) in the adapter directory. A kept adapter is written beside the
others and the router learns where its text lies (centroids of its embeddings).

Training and scoring run on a float copy of the model rebuilt from the weights generation reads
(int8 weights dequantized), so the scores are those of the model that generates.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aios.errors import AiosError
from aios.evolve import Adapter, AdapterInfo, AdapterStore
from aios.io import write_atomic
from aios.models import (
    Backbone,
    BackboneConfig,
    add_lora,
    add_side_branches,
    load_arrays,
    lora_tensors,
    read_model_config,
    side_tensors,
)
from aios.schedules import masking_schedule
from aios.training import TrainConfig, train
from aios_text.corpus import Document, load_corpus
from aios_text.data import MaskedDiffusionTask, TokenStream, evaluate_nelbo
from aios_text.evaluate import corpus_cache
from aios_text.inference import TOKENIZER_FILE, text_settings
from aios_text.model import TextDiffusionModel, text_head_from_settings
from aios_text.tokenizer import TextTokenizer

LOG_FILE = "evolution.log"


@dataclass(frozen=True)
class AdapterMethod:
    """How one adapter kind attaches to the torch backbone and is read back out of it.

    `attach` adds the adapter's (freshly initialised, no-op) parameters in place; parameters
    whose names contain `marker` are the ones that train; `tensors` returns them under the names
    `aios.evolve.apply_adapter` applies; `options` are stored in the adapter file.
    """

    kind: str
    level: int
    attach: Callable[[torch.nn.Module], object]
    tensors: Callable[[torch.nn.Module], dict[str, np.ndarray]]
    marker: str
    options: Mapping[str, Any] = field(default_factory=dict)


def lora_method(rank: int = 4, alpha: float = 8.0) -> AdapterMethod:
    """L2: LoRA factors of `rank` on every attention and feed-forward projection."""
    return AdapterMethod("lora", 2, lambda backbone: add_lora(backbone, rank, alpha),
                         lora_tensors, "lora_", {"rank": rank, "alpha": alpha})


def side_method(blocks: int = 2, hidden: int = 384) -> AdapterMethod:
    """L1: zero-initialised side branches of `hidden` units beside the last `blocks` blocks."""
    return AdapterMethod("sidenet", 1, lambda backbone: add_side_branches(backbone, blocks,
                                                                          hidden),
                         side_tensors, ".side.", {"blocks": blocks, "hidden": hidden})


@dataclass(frozen=True)
class EvolveOptions:
    """The training knobs and the rule of one adaptation (the `evolve` config section)."""

    steps: int = 300
    lr: float = 2e-3
    batch_size: int = 16
    replay: float = 0.25  # share of steps that train on the base domain's own text
    min_gain: float = 0.05  # held-out perplexity on the new text must fall by this share
    max_base_loss: float = 0.02  # base-domain perplexity may rise by at most this share
    held_out: float = 0.1  # share of the new text's documents kept for the check
    eval_windows: int = 64
    seed: int = 0


@dataclass
class Decision:
    """The outcome of one `aios evolve`: the scores before and after, and the verdict."""

    name: str
    kept: bool
    reason: str
    new_before: float  # perplexities (ELBO bounds)
    new_after: float
    base_before: float
    base_after: float
    parameters: int
    model_parameters: int
    seconds: float
    train_tokens: int
    held_out_tokens: int
    kind: str = ""  # the adapter kind tried
    level: int = 0

    @property
    def new_gain(self) -> float:
        return 1.0 - self.new_after / self.new_before

    @property
    def base_change(self) -> float:
        return self.base_after / self.base_before - 1.0

    def table(self) -> list[tuple[str, str, str, str]]:
        return [("", "before", "after", "change"),
                ("new-domain perplexity (held out)", f"{self.new_before:.2f}",
                 f"{self.new_after:.2f}", f"{-self.new_gain:+.1%}"),
                ("base-domain perplexity (check set)", f"{self.base_before:.2f}",
                 f"{self.base_after:.2f}", f"{self.base_change:+.1%}")]


def load_float_model(directory: str | os.PathLike[str]
                     ) -> tuple[TextDiffusionModel, TextTokenizer, dict[str, Any]]:
    """The text model in float32 torch, from exactly the weights the NumPy model generates
    with (quantized matrices dequantized once)."""
    directory = Path(directory)
    settings = text_settings(directory)
    backbone = Backbone(BackboneConfig.from_dict(read_model_config(directory)["backbone"]))
    head = text_head_from_settings(settings, backbone.config.dim)
    for module, file in ((backbone, "backbone.arrow"), (head, "text.arrow")):
        arrays = load_arrays(directory / file)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    tokenizer = TextTokenizer.load(directory / settings.get("tokenizer", TOKENIZER_FILE))
    return TextDiffusionModel(backbone, head).eval(), tokenizer, settings


def split_documents(documents: Sequence[Document], held_out: float
                    ) -> tuple[list[Document], list[Document]]:
    """(train, held out) by a hash of each document's title (its name inside the folder), so
    the split does not change when the folder moves."""
    train_docs, check = [], []
    for d in documents:
        digest = hashlib.sha256(f"evolve/{d.title}".encode()).digest()
        (check if digest[0] < held_out * 256 else train_docs).append(d)
    return train_docs, check


def split_stream(documents: Sequence[Document], tokenizer: TextTokenizer, held_out: float,
                 length: int, progress: bool) -> tuple[TokenStream, TokenStream]:
    """Token streams of the training and held-out text. With too few documents for a split by
    document (a single file), the stream's last `held_out` share is held out instead."""
    train_docs, check = split_documents(documents, held_out)
    if train_docs and check:
        train_stream = TokenStream.from_documents(train_docs, tokenizer, progress=progress)
        check_stream = TokenStream.from_documents(check, tokenizer, progress=progress)
        if len(check_stream) >= 4 * length and len(train_stream) >= 4 * length:
            return train_stream, check_stream
    stream = TokenStream.from_documents(documents, tokenizer, progress=progress)
    cut = int(len(stream) * (1 - held_out))
    train_stream, check_stream = TokenStream(stream.ids[:cut]), TokenStream(stream.ids[cut:])
    if len(check_stream) < length + 1 or len(train_stream) < length:
        raise AiosError(f"the new text is {len(stream)} tokens; adapting needs at least "
                        f"{int(10 * length / held_out)} so that a held-out share can check it")
    return train_stream, check_stream


def base_streams(settings: dict[str, Any], tokenizer: TextTokenizer, progress: bool,
                 replay_documents: int = 2000) -> tuple[TokenStream | None, TokenStream]:
    """(replay text from the base training split or None, base check set = validation split)."""
    documents = load_corpus(settings.get("corpus") or [], corpus_cache())
    check = [d for d in documents if d.split == "validation"]
    if not check:
        raise AiosError("the model's corpus has no validation split to check the base domain on")
    train_docs = [d for d in documents if d.split == "train"]
    step = max(1, len(train_docs) // replay_documents)
    replay = TokenStream.from_documents(train_docs[::step], tokenizer, progress=progress) \
        if train_docs else None
    return replay, TokenStream.from_documents(check, tokenizer, progress=progress)


def perplexity(model: TextDiffusionModel, stream: TokenStream, settings: dict[str, Any],
               length: int, windows: int) -> float:
    """exp(negative ELBO) on the stream's first windows (the same masks every call)."""
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    nll = evaluate_nelbo(model, stream, alpha, int(settings["mask_id"]), length=length,
                         max_windows=windows)
    return float(np.exp(nll))


def evolve(model_dir: str | os.PathLike[str], documents: Sequence[Document], name: str, *,
           method: AdapterMethod | None = None, options: EvolveOptions = EvolveOptions(),
           store: AdapterStore | None = None,
           base: tuple[TokenStream | None, TokenStream] | None = None, domain: str = "",
           shuffle_tokens: bool = False, progress: bool = True) -> Decision:
    """Train an adapter (`method`, default LoRA) on `documents` and keep it under `name` only if
    the balanced rule holds. `base` gives (replay, check set) streams (default: from the model's
    corpus).
    `shuffle_tokens` scrambles the training tokens: an adaptation that cannot help, which the
    rule must reject (the test of the rule)."""
    started = time.perf_counter()
    method = method or lora_method()
    store = store or AdapterStore()
    store.path(name)  # checks the name before any work
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    model, tokenizer, settings = load_float_model(model_dir)
    length = int(settings.get("sequence_length", 128))
    train_stream, check_stream = split_stream(documents, tokenizer, options.held_out, length,
                                              progress)
    if shuffle_tokens:
        train_stream = TokenStream(np.random.default_rng(options.seed).permutation(
            train_stream.ids))
    replay, base_check = base if base is not None else base_streams(settings, tokenizer,
                                                                    progress)
    windows = options.eval_windows
    new_before = perplexity(model, check_stream, settings, length, windows)
    base_before = perplexity(model, base_check, settings, length, windows)

    torch.manual_seed(options.seed)  # the adapter's initialisation: a run is reproducible
    method.attach(model.backbone)
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    mask_id = int(settings["mask_id"])
    tasks = [MaskedDiffusionTask(train_stream, alpha, mask_id, length, options.batch_size,
                                 name="new", weight=1.0 - options.replay)]
    if replay is not None and options.replay > 0:
        tasks.append(MaskedDiffusionTask(replay, alpha, mask_id, length, options.batch_size,
                                         name="base", weight=options.replay))
    config = TrainConfig(steps=options.steps, lr=options.lr, min_lr=options.lr / 10,
                         warmup=max(1, options.steps // 10), weight_decay=0.0, ema_decay=None,
                         seed=options.seed, checkpoint_every=options.steps)
    with tempfile.TemporaryDirectory(prefix="aios-evolve-") as run:
        train(model, tasks, config, run, trainable=lambda n: method.marker in n, resume=False,
              progress=progress)
    model.eval()
    new_after = perplexity(model, check_stream, settings, length, windows)
    base_after = perplexity(model, base_check, settings, length, windows)
    tensors = method.tensors(model.backbone)
    parameters = sum(int(v.size) for v in tensors.values())
    model_parameters = sum(p.numel() for n, p in model.named_parameters()
                           if method.marker not in n)
    decision = Decision(name, False, "", new_before, new_after, base_before, base_after,
                        parameters, model_parameters, 0.0, len(train_stream), len(check_stream),
                        method.kind, method.level)
    gain_ok = decision.new_gain >= options.min_gain
    base_ok = decision.base_change <= options.max_base_loss
    decision.kept = gain_ok and base_ok
    decision.reason = "kept: both checks pass" if decision.kept else "discarded: " + "; ".join(
        why for ok, why in ((gain_ok, f"new-domain perplexity fell {decision.new_gain:.1%} < "
                                      f"the required {options.min_gain:.1%}"),
                            (base_ok, f"base-domain perplexity rose {decision.base_change:.1%}"
                                      f" > the allowed {options.max_base_loss:.1%}")) if not ok)
    decision.seconds = time.perf_counter() - started
    if decision.kept:
        info = AdapterInfo(name, method.kind, method.level, str(Path(model_dir).resolve()),
                           parameters, dict(method.options),
                           {k: round(v, 4) for k, v in asdict(decision).items()
                            if isinstance(v, float)}, domain)
        store.save(Adapter(info, tensors))
        train_docs = split_documents(documents, options.held_out)[0] or list(documents)
        record_centroids(store, model_dir, name, train_docs, tokenizer, base_check)
    log_decision(store, decision, options, domain, method)
    return decision


def passages(texts: Sequence[str], count: int, chars: int = 400, seed: int = 0) -> list[str]:
    """Up to `count` pieces of about `chars` characters drawn from the texts (what a request
    to the router looks like: a paragraph, not a whole book)."""
    pieces = [t[i:i + chars] for t in texts for i in range(0, len(t), chars)]
    pieces = [p for p in pieces if len(p.strip()) >= 20]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pieces), min(count, len(pieces)), replace=False) if pieces else []
    return [pieces[i] for i in sorted(chosen)]


def record_centroids(store: AdapterStore, model_dir: str | os.PathLike[str], name: str,
                     documents: Sequence[Document], tokenizer: TextTokenizer,
                     base_check: TokenStream, count: int = 256, embedder: Any = None) -> None:
    """Tell the router where the adapter's text lies (and, the first time, where the base
    model's own text lies: its check set). The embedder is the memory's best (`auto`: MiniLM
    where installed, else the text model's own mean-pooled states)."""
    from aios.evolve import BASE, AdapterRouter
    from aios.memory import build_embedder

    router = AdapterRouter(store.directory, embedder or build_embedder("auto"))
    try:
        if BASE not in router.names():
            base_texts = [tokenizer.decode(row) for row in base_check.chunks(96)[:count]]
            router.set_centroids(BASE, base_texts)
        router.set_centroids(name, passages([d.text for d in documents], count))
    finally:
        router.close()


def log_decision(store: AdapterStore, decision: Decision, options: EvolveOptions,
                 domain: str, method: AdapterMethod) -> None:
    """Append the decision to the adapter directory's `evolution.log` (one JSON per line)."""
    path = store.directory / LOG_FILE
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "domain": domain,
             **asdict(decision), "options": {**asdict(options), **method.options}}
    old = path.read_bytes() if path.exists() else b""
    line = json.dumps(entry, sort_keys=True).encode() + b"\n"
    write_atomic(path, lambda f: f.write(old + line))


def calibrate_model(model_dir: str | os.PathLike[str], *, documents: int = 8,
                    progress: bool = True) -> Path:
    """Write the model's uncertainty calibration, measured on every `documents`-th document of
    its training split."""
    from aios_text.inference import load_array_text_model
    from aios_text.uncertainty import calibrate

    net, tokenizer, settings = load_array_text_model(model_dir)
    corpus = settings.get("corpus") or []
    train_docs = [d for d in load_corpus(corpus, corpus_cache()) if d.split == "train"]
    if not train_docs:
        raise AiosError(f"{model_dir} records no training corpus to calibrate on")
    stream = TokenStream.from_documents(train_docs[::documents], tokenizer, progress=progress)
    source = f"training split of {', '.join(corpus)} (every {documents}th document)"
    return calibrate(net, tokenizer, stream.ids, source=source, progress=progress).save(model_dir)
