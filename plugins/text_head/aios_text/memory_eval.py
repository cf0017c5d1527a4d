"""Does generation use its memory? Scores on held-out invented facts, with and without it.

- `exact_match`: generate after each question or cloze of the held-out facts, through the
  engine (retrieval from a real store, the head, a sampler), and count the generations that
  contain the fact's answer. Without memory the answer is unknowable (the names are invented and
  were never trained on), so that score should be near zero.
- `fact_perplexity`: the perplexity bound of a held-out fact's sentence given a context of
  passages: one that states the fact in other words (relevant), passages of other facts only
  (random), or none. Only the sentence is scored; the context is never masked.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from aios.memory import Passage
from aios_text.diffusion import Alpha, mdlm_loss
from aios_text.facts import Fact
from aios_text.passages import context_ids
from aios_text.tokenizer import TextTokenizer


@dataclass(frozen=True)
class MatchResult:
    """Exact-match rate and what was generated (prompt, answer, generation)."""

    rate: float
    generations: list[tuple[str, str, str]]


def answer_found(answer: str, generation: str) -> bool:
    """The answer phrase appears in the generation (case-insensitive)."""
    return answer.lower() in generation.lower()


def exact_match(generate: Callable[[str], str], facts: Sequence[Fact], *,
                progress: bool = True) -> MatchResult:
    """The share of the facts' prompts whose generation (the prompt's continuation, without
    the prompt itself) contains the answer."""
    generations = []
    prompts = [(p, f.answer) for f in facts for p, _ in f.prompts]
    for prompt, answer in tqdm(prompts, desc="generating", unit="prompt", disable=not progress):
        text = generate(prompt)
        generations.append((prompt, answer, text[len(prompt):] if text.startswith(prompt)
                            else text))
    hits = sum(answer_found(a, g) for _, a, g in generations)
    return MatchResult(hits / max(1, len(generations)), generations)


def fact_contexts(fact: Fact, others: Sequence[Fact], rng: random.Random,
                  passages: int = 5) -> dict[str, list[str]]:
    """The three contexts of `fact_perplexity`: `relevant` holds the fact's canonical sentence
    among passages of other facts (the best-scored place, nearest the prompt), `random` only
    other facts, `none` nothing."""
    distractors = [o.statement for o in rng.sample(list(others), passages)]
    return {"relevant": [*distractors[: passages - 1], fact.statement],
            "random": distractors, "none": []}


@torch.no_grad()
def fact_perplexity(model: torch.nn.Module, tokenizer: TextTokenizer, alpha: Alpha,
                    facts: Sequence[Fact], others: Sequence[Fact], *, samples: int = 8,
                    seed: int = 0) -> dict[str, float]:
    """Perplexity bound of each fact's second rendering (a paraphrase of the stored canonical
    one) given each kind of context, averaged over `samples` noise levels per sentence."""
    model.eval()
    rng = random.Random(seed)
    max_len = model.backbone.config.max_len
    totals: dict[str, list[float]] = {"relevant": [], "random": [], "none": []}
    for fact in facts:
        target = [*tokenizer.encode(fact.sentences[1]), tokenizer.eos_id]
        for kind, texts in fact_contexts(fact, others, rng).items():
            scored = [Passage(t, float(i)) for i, t in enumerate(texts)]
            context = context_ids(tokenizer, scored, max_len - len(target))
            row = torch.tensor([context + target])
            maskable = torch.zeros_like(row, dtype=torch.bool)
            maskable[0, len(context):] = True
            generator = torch.Generator().manual_seed(seed)
            batch = row.expand(samples, -1)
            nll = mdlm_loss(model, batch, alpha, tokenizer.mask_id, generator,
                            maskable=maskable.expand(samples, -1))
            totals[kind].append(float(nll))
    return {kind: float(np.exp(np.mean(values))) for kind, values in totals.items()}

