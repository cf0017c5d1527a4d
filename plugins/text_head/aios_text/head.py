"""The text head as the engine sees it: prompts in, masked sequences to the sampler, text out.

A prompt becomes `[prompt tokens] [mask] * length [suffix tokens]`; the sampler unmasks the
middle. With a suffix (infilling) the head does not stop at end-of-sequence, since the text
must join the suffix. A batch of prompts is left-padded to one length, with the padding hidden
from attention, so every row is generated as if it were alone.

Prefix cache: block-wise samplers (`semi-ar`) promise through `MaskedState.on_prefix` that the
first positions are final. The head then runs those positions once through the backbone, keeps
their keys and values, and later evaluates only the positions after them. This is the usual
approximation of cached masked-diffusion decoding (as in Fast-dLLM): the cached prefix no longer
sees the positions after it, exactly what a block-causal attention mask would give. The
benchmark reports its quality beside the uncached decoding; `prefix_cache: false` turns it off.
A model with a copy head (`aios_text.model.CopyHead`) always runs uncached, since it copies from
every visible position.

The network runs in NumPy (`aios_text.inference`): generating never imports torch, which would
cost more than a short generation itself on a small CPU.

Memory in the context: the passages a conditioner put into `request.context` (retrieved memory,
best scores first) go before the prompt, each closed by `<eos>`, the best one nearest the
prompt: `[passage] <eos> ... [best passage] <eos> [prompt] [mask] * length`. When they do not
all fit in the model's `max_len`, the lowest-scored are dropped first. The output shows only
the prompt and what was generated, never the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aios.errors import AiosError, UsageError
from aios.models import ArrayKVCache
from aios.protocols import GenerationRequest, MaskedState
from aios_text.adapted import AdaptedModels
from aios_text.inference import (
    DEFAULT_MODEL,
    load_array_text_model,
    model_path,
    shipped_models,
)
from aios_text.passages import context_ids

#: How a still-masked position looks in a partial (streamed) decode.
MASK_PLACEHOLDER = "\u2591"


def text_request(request: GenerationRequest, default_length: int
                 ) -> tuple[list[str], int, str | None]:
    """What a text head reads from a request: its prompts (a single prompt as a list of one),
    the new tokens to generate (option `length`, else `default_length`; a `UsageError` unless
    positive) and the infilling `suffix` option, if any."""
    prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
    length = int(request.options.get("length", default_length))
    if length < 1:
        raise UsageError(f"length must be positive, got {length}")
    return prompts, length, request.options.get("suffix")


def decode_with_masks(decode: Callable[[list[int]], str], ids: list[int], mask_id: int) -> str:
    """The text of `ids`, each still-masked position shown as `MASK_PLACEHOLDER` (a streamed,
    partial state), the runs between masks decoded by `decode`."""
    if mask_id not in ids:
        return decode(ids)
    parts, run = [], []
    for i in ids:
        if i == mask_id:
            if run:
                parts.append(decode(run))
                run = []
            parts.append(MASK_PLACEHOLDER)
        else:
            run.append(i)
    if run:
        parts.append(decode(run))
    return "".join(parts)


@dataclass(frozen=True, eq=False)
class TextState(MaskedState):
    """A `MaskedState` that knows where each row's context ends (samplers keep the field), so
    `decode` shows the prompt and the generation only."""

    context_end: np.ndarray | None = None


class TextDiffusionHead:
    """Masked-diffusion text generation with a trained aios text model directory.

    Options (config keys beside `head.name`): `model` a model directory (default: the shipped
    one), `length` new tokens per generation, `prefix_cache` reuse the keys/values of final
    positions, `adapters` the adapters to apply (`none`, `auto`: the router chooses per
    request, or names), `adapters_dir` where they are (default: see `aios.evolve`).
    Requests may override `adapters` and ask to `explain` (uncertainty and router choice, then
    in `last_explain`).
    """

    modality = "text"
    #: The shipped model; other packs' recipes with `backbone_from: text` build on it.
    default_model = DEFAULT_MODEL
    family = "discrete"
    #: The per-request options `initial_state` reads (`request.options`), with what each does:
    #: the command line passes these through and refuses any other.
    generation_options: ClassVar[dict[str, str]] = {
        "length": "new tokens to generate",
        "suffix": "text that must follow; the model fills the middle (infilling)",
        "adapters": "adapters to apply: auto, none, or NAME[:WEIGHT] names",
        "adapters_dir": "where the adapters are kept",
        "explain": "record the uncertainty and the adapters chosen in last_explain",
    }
    #: `denoise` takes one `t` per row, and a row's logits depend only on that row (padding
    #: hidden), so a server may batch rows of different requests at different steps in one call.
    row_times = True

    def __init__(self, model: str = "", length: int = 64, prefix_cache: bool = True,
                 adapters: str = "none", adapters_dir: str = "") -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        path = model_path(model)
        if not (path / "model.yaml").exists():
            what = "the default text model is" if not model else f"no text model is in {model!r}:"
            raise AiosError(f"{what} missing from {path}; give a model directory or a shipped "
                            f"model ({', '.join(shipped_models())}): --set head.model=DIR, or "
                            "reinstall aios-text")
        self.model, self.tokenizer, self.settings = load_array_text_model(path)
        if self.settings.get("objective", "diffusion") != "diffusion":
            raise AiosError(f"{path} holds a {self.settings['objective']} model, not a diffusion "
                            "model; the text head generates with diffusion models only")
        self.length = length
        self.prefix_cache = prefix_cache
        self.adapted = AdaptedModels(self.model, self.tokenizer, path, adapters_dir or None)
        self.adapters = adapters
        self.last_explain: dict[str, Any] | None = None
        self._base = self.model
        self._mixture: list[tuple[Any, float]] = []
        self.calls = 0  # network evaluations, for benchmarks and cache tests
        self.positions = 0  # positions evaluated by the network (cache savings show here)
        self._cache: ArrayKVCache | None = None
        self._t = 1.0

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the shared backbone and of this head (for `aios plugins --verbose`)."""
        model = self.model
        return {"backbone": sum(w.size for w in model.backbone.w.values()),
                "head": model.parameters()}

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> MaskedState:
        prompts, length, suffix = text_request(request, self.length)
        suffix_ids = self.tokenizer.encode(suffix) if suffix else []
        rows = [ids + [self.tokenizer.mask_id] * length + suffix_ids
                for ids in self.tokenizer.encode_batch(prompts)]
        width = max(len(r) for r in rows)
        limit = self.model.backbone.config.max_len
        if width > limit:
            most = limit - (width - length)
            fix = (f"ask for at most {most} new tokens (--length {most})" if most > 0
                   else "shorten the prompt or the suffix")
            raise UsageError(f"prompt + length + suffix is {width} tokens, more than the "
                             f"model's {limit}; {fix}")
        context = context_ids(self.tokenizer, request.context, limit - width)
        rows = [context + row for row in rows]
        width += len(context)
        tokens = np.full((len(rows), width), self.tokenizer.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            tokens[i, width - len(row):] = row
        context_end = np.array([width - len(row) + len(context) for row in rows])
        eos = None if suffix else self.tokenizer.eos_id
        self._cache, self._t = None, 1.0  # one generation at a time per head
        self._choose_models(request, prompts)
        cacheable = self.prefix_cache and not self._mixture and self.model.copy is None
        on_prefix = self._cache_prefix if cacheable else None
        return TextState(tokens, self.tokenizer.mask_id, eos, on_prefix=on_prefix,
                         context_end=context_end)

    def _choose_models(self, request: GenerationRequest, prompts: list[str]) -> None:
        """Pick the network(s) for this request: the base model, one adapted model, or a
        weighted composition of several (L0: their logits are mixed; no prefix cache then)."""
        wanted = request.options.get("adapters", self.adapters)
        directory = request.options.get("adapters_dir")
        if directory and Path(directory).expanduser() != self.adapted.store.directory:
            self.adapted = AdaptedModels(self._base, self.tokenizer, self.adapted.model_dir,
                                         directory)
        choice = self.adapted.resolve(wanted, " ".join(prompts))
        models = [(self.adapted.model(name), weight) for name, weight in choice.weights.items()]
        self.model = models[0][0] if len(models) == 1 else self._base
        self._mixture = models if len(models) > 1 else []
        self.last_explain = None
        if request.options.get("explain"):
            self.last_explain = {"adapters": wanted, "chosen": dict(choice.weights),
                                 "similarities": dict(choice.similarities),
                                 "uncertainty": self.adapted.uncertainty(" ".join(prompts))}
            if len(choice.weights) == 1:  # how unsure the model that serves the request is
                self.last_explain["uncertainty_adapted"] = self.adapted.uncertainty(
                    " ".join(prompts), next(iter(choice.weights)))

    def denoise(self, state: MaskedState, t: Any, request: GenerationRequest) -> np.ndarray:
        self.calls += 1
        tokens = np.atleast_2d(np.asarray(state.tokens))
        times = np.asarray(t, dtype=np.float32).reshape(-1)
        if times.size not in (1, tokens.shape[0]):
            raise ValueError(f"t has {times.size} values for {tokens.shape[0]} rows; give one "
                             "time, or one per row")
        self._t = float(times[0])
        times = np.broadcast_to(times, (tokens.shape[0],))
        cache = self._cache
        if cache is not None and (state.rows is not None or len(tokens) != len(
                cache.padding_mask)):
            cache = cache.rows(np.arange(len(tokens)) if state.rows is None
                               else np.asarray(state.rows))
        start = 0 if cache is None else cache.length
        rest = tokens[:, start:]
        self.positions += rest.size
        if self._mixture:
            real = rest != self.tokenizer.pad_id
            return sum(weight * model(rest, times, padding_mask=real)
                       for model, weight in self._mixture)
        logits = self.model(rest, times, padding_mask=rest != self.tokenizer.pad_id, past=cache)
        if not start:
            return logits
        # Cached positions are final, so the sampler never reads their predictions.
        full = np.zeros((tokens.shape[0], tokens.shape[1], logits.shape[-1]), dtype=np.float32)
        full[:, start:] = logits
        return full

    def _cache_prefix(self, tokens: np.ndarray, length: int) -> None:
        """`on_prefix`: positions [:length] of every row are final; keep their keys/values."""
        tokens = np.atleast_2d(np.asarray(tokens))
        start = 0 if self._cache is None else self._cache.length
        if length <= start:
            return
        chunk = tokens[:, start:length]
        times = np.full(chunk.shape[0], self._t, dtype=np.float32)
        self._cache = self.model.cache(chunk, times, padding_mask=chunk != self.tokenizer.pad_id,
                                       past=self._cache)

    def decode(self, state: MaskedState, request: GenerationRequest) -> str | list[str]:
        """The text of each row; positions still masked (a streamed, partial state) show as
        `MASK_PLACEHOLDER` so the text can be watched as it is unmasked."""
        texts = []
        stop = not request.options.get("suffix")
        ends = getattr(state, "context_end", None)
        for n, row in enumerate(np.atleast_2d(state.tokens)):
            row = row if ends is None else row[ends[n]:]
            ids = [int(i) for i in row if i != self.tokenizer.pad_id]
            if stop and self.tokenizer.eos_id in ids:
                ids = ids[: ids.index(self.tokenizer.eos_id)]
            texts.append(self._decode_with_masks(ids))
        return texts[0] if isinstance(request.prompt, str) else texts

    def _decode_with_masks(self, ids: list[int]) -> str:
        return decode_with_masks(self.tokenizer.decode, ids, self.tokenizer.mask_id)
