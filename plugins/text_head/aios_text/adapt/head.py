"""The text head of an adapted block-diffusion model (the default text model).

The engine's contract (`aios.protocols`): `initial_state` lays out `[memory context] [prompt]
[mask] * length [suffix]`, the block-wise sampler (`block-threshold`) reveals positions of the
current block, `denoise` gives the logits of the current block's positions, `decode` gives the
text. The sampler announces finished blocks through `on_prefix`, and the head keeps, per row,
a causal key/value cache of everything final (`aios.runtime.BlockKVCache`): a step runs only
the not-yet-cached final tokens (causally; they join the cache in the same forward) and the
current block (bidirectionally, over the whole prefix). So a block of 8 costs about one forward
of 8 positions per step, whatever the prompt's length.

Logits are given only for the current block's first position and its still-masked ones; other
positions get all-zero logits (uniform), which the block-wise sampler never reads. Rows are
independent (each has its own cache), so a sampler may evaluate a subset of them; the rows
asked for go through the network in one padded forward
(`aios_text.adapt.decode.step_hidden_rows`).

Everything one generation owns (its rows' caches, where its finished prefix ends, its logits
buffer) lives in a `_Generation` that its `BlockState` carries, not in the head: one head serves
concurrent generations, and `denoise_many` evaluates the current blocks of several of them in
one forward (the server's step batcher joins concurrent requests this way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from aios.errors import UsageError
from aios.protocols import GenerationRequest, MaskedState
from aios.runtime import BlockKVCache, to_host
from aios_text.adapt.decode import BlockModel, step_hidden_rows
from aios_text.head import decode_with_masks, text_request

#: SmolLM2's padding and end of text (`<|endoftext|>`, `<|im_end|>`).
PAD_ID, END_ID = 0, 2
#: The system turn SmolLM2-Instruct's chat template adds when a conversation has none.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def memory_context(encode: Callable[[str], list[int]], passages: Any) -> list[int]:
    """Token ids of memory passages as generation lays them before the prompt: best last
    (nearest the prompt), each closed by end of text. Memory training
    (`aios_text.adapt.memory`) builds its examples with this function, so a model learns to
    read exactly the layout it is given."""
    ids: list[int] = []
    for passage in reversed(list(passages or [])):
        text = passage if isinstance(passage, str) else getattr(passage, "text", str(passage))
        ids += [*encode(text), END_ID]
    return ids


@dataclass(frozen=True, eq=False)
class BlockState(MaskedState):
    """A `MaskedState` that tells a block-wise sampler the block length the model was trained
    for, and where each row's output begins (after the memory context and the prompt)."""

    block_length: int = 8
    context_end: np.ndarray | None = None
    generation: _Generation | None = None


class _Row:
    """One row's cache: keys/values of columns [start, cached), and the logits that predict
    the first position of the current block."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.cached = start
        self.cache = BlockKVCache()
        self.first: Any = None


class _Generation:
    """What one generation owns: its rows, where its finished prefix ends (told by the sampler
    through `on_prefix`), and its logits buffer."""

    def __init__(self, rows: list[_Row], final: int) -> None:
        self.rows = rows
        self.final = final
        self.logits: Any = None
        self.written: tuple[int, int] | None = None

    def on_prefix(self, tokens: Any, length: int) -> None:
        self.final = max(self.final, int(length))

    def output(self, batch: int, width: int, vocab: int, model: BlockModel) -> Any:
        """The logits array of this generation, in `model`'s runtime: allocated once (batch x
        width x vocab, tens of MB), zero except the block written last, which is zeroed again
        here (the sampler reads only the current block, and zeros elsewhere keep any other
        reader harmless)."""
        if self.logits is None or tuple(self.logits.shape) != (batch, width, vocab):
            self.logits = model.asarray(np.zeros((batch, width, vocab), np.float32))
        elif self.written is not None:
            self.logits[:, self.written[0]:self.written[1]] = 0
        self.written = None
        return self.logits


class BlockDiffusionTextHead:
    """Generates text with an adapted block-diffusion model (`aios_text.adapt`).

    Options: `model` (the shipped adapted model's name, or a directory made by
    `aios_text.adapt.shipping.materialize`), `length` new tokens, `block_size` (default: what
    the model was trained for), `runtime` (``torch``, or ``numpy``: no torch, int8 weights
    multiplied as stored), `dtype` (`float32` or `bfloat16`) and `device` (torch only).
    """

    modality = "text"
    family = "discrete"
    #: logits are given for the current block only, so the sampler must go block by block
    preferred_sampler = "block-threshold"
    #: the token rows are left-padded with (`decode` drops it)
    pad_id = PAD_ID
    generation_options: ClassVar[dict[str, str]] = {
        "length": "new tokens to generate (at most; end of text stops earlier)",
        "suffix": "text that must follow; the model fills the middle (infilling)",
    }

    def __init__(self, model: str = "", length: int = 128, block_size: int = 8,
                 dtype: str = "float32", device: str = "cpu", runtime: str = "torch") -> None:
        from aios_text.adapt.shipping import open_adapted

        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.model: BlockModel
        self.model, self.tokenizer, self.source = open_adapted(model, dtype=dtype, device=device,
                                                               runtime=runtime)
        self.length, self.block_size = length, block_size
        #: most rows in one forward (more are evaluated in several)
        self.max_rows = 64
        self.calls = 0
        self.positions = 0

    def parameter_counts(self) -> dict[str, int]:
        return {"backbone": self.model.parameter_count(), "head": 0}

    # -- the engine's contract -------------------------------------------------------------------

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> BlockState:
        prompts, length, suffix = text_request(request, self.length)
        suffix_ids = self._encode(suffix) if suffix else []
        context = self._context(request.context)
        encoded = [context + self._encode(p) for p in prompts]
        if any(not ids for ids in encoded):
            raise UsageError("the prompt is empty; give at least one word")
        limit = int(self.model.config.max_position_embeddings)
        longest = max(map(len, encoded)) + length + len(suffix_ids)
        if longest > limit:
            raise UsageError(f"prompt + length + suffix is {longest} tokens, more than the "
                             f"model's {limit}; ask for fewer tokens or shorten the prompt")
        width = max(map(len, encoded))
        mask = self.model.mask_token_id
        rows = [[PAD_ID] * (width - len(ids)) + ids + [mask] * length + suffix_ids
                for ids in encoded]
        tokens = np.array(rows, dtype=np.int64)
        generation = _Generation([_Row(width - len(ids)) for ids in encoded], width)
        block = self.block_size if not suffix_ids else length + len(suffix_ids)
        ends = np.array([width - len(ids) + len(context) for ids in encoded])
        return BlockState(tokens, mask, None if suffix_ids else END_ID,
                          on_prefix=generation.on_prefix, block_length=block, context_end=ends,
                          generation=generation)

    def denoise(self, state: MaskedState, t: Any, request: GenerationRequest) -> Any:
        return self.denoise_many([(state, t, request)])[0]

    def denoise_many(self, calls: list[tuple[MaskedState, Any, GenerationRequest]]
                     ) -> list[Any]:
        """`denoise` for several generations' states at once (each as `denoise` would answer
        it): every asked-for row of every state goes through one forward. The logits are
        arrays of the model's runtime (torch tensors, or NumPy arrays)."""
        vocab = self.model.vocab_size
        work: list[tuple[Any, int, _Row, np.ndarray, int, int]] = []
        outputs = []
        for state, _t, _request in calls:
            generation = getattr(state, "generation", None)
            if generation is None:
                raise ValueError("this state was not made by this head's initial_state")
            tokens = np.atleast_2d(to_host(state.tokens))
            rows = range(len(tokens)) if state.rows is None else [int(r) for r in state.rows]
            block = getattr(state, "block_length", self.block_size)
            begin, end = generation.final, min(generation.final + block, tokens.shape[1])
            out = generation.output(len(generation.rows), tokens.shape[1], vocab,
                                    self.model)[:len(tokens)]
            generation.written = (begin, end)
            outputs.append(out)
            work += [(out, i, generation.rows[r], tokens[i], begin, end)
                     for i, r in enumerate(rows)]
        with self.model.inference():
            for chunk in range(0, len(work), self.max_rows):
                part = work[chunk:chunk + self.max_rows]
                logits = self._step([(row, ids, begin, end) for _, _, row, ids, begin, end
                                     in part])
                for (out, i, _, _, begin, end), row_logits in zip(part, logits, strict=True):
                    out[i, begin:end] = row_logits
        self.calls += 1
        return outputs

    def decode(self, state: MaskedState, request: GenerationRequest) -> str | list[str]:
        texts = []
        ends = getattr(state, "context_end", None)
        for n, row in enumerate(np.atleast_2d(np.asarray(state.tokens))):
            ids = [int(i) for i in (row if ends is None else row[ends[n]:]) if i != PAD_ID]
            if state.eos_id is not None and state.eos_id in ids:
                ids = ids[:ids.index(state.eos_id)]
            texts.append(self._text(ids))
        return texts[0] if isinstance(request.prompt, str) else texts

    # -- the work ---------------------------------------------------------------------------------

    def _step(self, work: list[tuple[_Row, np.ndarray, int, int]]) -> list[Any]:
        """Logits of columns [begin, end) of each row, in one forward; each row's finished
        columns join its cache. The output layer (a fifth of the network's work) runs once for
        every row together, and only where logits are read: the block's first position and
        its still-masked ones (revealed positions get zeros, which a block-wise sampler never
        reads)."""
        pending = [begin - row.cached for row, _, begin, _ in work]
        hidden = step_hidden_rows(self.model, [row.cache for row, *_ in work],
                                  [ids[row.cached:end] for row, ids, _, end in work],
                                  pending=pending,
                                  start=[row.cached - row.start for row, *_ in work])
        # logits shift: block position j > 0 is predicted by the block's state j - 1, the first
        # by the last pending state (kept in `row.first` while the block is decoded)
        asarray = self.model.asarray
        masked = [np.flatnonzero(ids[begin + 1:end] == self.model.mask_token_id) + 1
                  for _, ids, begin, end in work]
        xp = array_namespace(hidden[0])
        wanted = [xp.concat([states[p - 1:p], states[asarray(p - 1 + m)]]) if p
                  else states[asarray(m - 1)]
                  for states, p, m in zip(hidden, pending, masked, strict=True)]
        together = xp.astype(self.model.logits(xp.concat(wanted)), xp.float32)
        ends = np.cumsum([w.shape[0] for w in wanted])
        logits = [together[e - w.shape[0]:e] for w, e in zip(wanted, ends, strict=True)]
        answers = []
        for (row, _, begin, end), own, p, m in zip(work, logits, pending, masked, strict=True):
            self.positions += end - row.cached
            if p:
                row.first, own = own[0], own[1:]
                row.cached = begin
            block = xp.zeros((end - begin, own.shape[-1]), dtype=own.dtype,
                             device=device_of(own))
            block[0] = row.first
            block[asarray(m)] = own
            answers.append(block)
        return answers

    def chat_prompt(self, messages: Any) -> str:
        """SmolLM2-Instruct's chat format (ChatML: each turn between ``<|im_start|>role`` and
        ``<|im_end|>``, then the assistant's turn opened), with the base model's default
        system turn when the conversation has none. The answer ends at ``<|im_end|>``, which
        is the head's end of text."""
        turns = list(messages)
        if not turns or turns[0][0] != "system":
            turns.insert(0, ("system", DEFAULT_SYSTEM))
        return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns) + \
            "<|im_start|>assistant\n"

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def _context(self, passages: Any) -> list[int]:
        return memory_context(self._encode, passages)

    def _text(self, ids: list[int]) -> str:
        return decode_with_masks(self.tokenizer.decode, ids, self.model.mask_token_id)


__all__ = ["BlockDiffusionTextHead", "BlockState", "memory_context"]
