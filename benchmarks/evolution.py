"""Self-evolution: one adaptation of the shipped text model to a new domain, before and after.

    python benchmarks/evolution.py [--adapters DIR] [--name NAME] [--kind lora|sidenet]
                                   [--reuse] [--prompts N]

The new domain is the docstrings of Python's standard library (`python-docstrings`: technical
English about programs; the model was trained on fortunes, the King James Bible and
Shakespeare). Every figure is measured in this run, the baseline (the model without adapter)
beside it:

1. Adaptation (`aios evolve python-docstrings` with one adapter kind, `--kind`: LoRA, level
   2, or a side network, level 1; the `evolve` defaults): held-out
   perplexity bound on the new domain before/after (goal: >= 25% lower), the base domain's
   check set (its validation split; goal: <= 2% worse), the keep/discard decision, the time to
   adapt on this CPU (1 thread). `--reuse` skips training and scores the adapter already in
   DIR, re-measuring before and after here.
2. Sizes: adapter parameters and bytes beside the model's.
3. Uncertainty: ROC AUC of the uncertainty score, held-out base-domain text against held-out
   new-domain text, for texts of 16, 64 and 128 tokens; and the share above the 1.5 threshold.
4. Router (`--adapters auto`): a shuffled mixed stream of N/2 new-domain and N/2 base-domain
   prompts (passages of 200 characters from held-out text): how often the adapter is chosen for
   new-domain prompts (goal >= 90%) and base prompts are left alone (goal >= 90%).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from aios_text.adapted import AdaptedModels
from aios_text.adapter_kinds import LoRAKind, SideNetKind
from aios_text.corpus import load_corpus
from aios_text.data import TokenStream
from aios_text.evaluate import corpus_cache
from aios_text.evolve import (
    base_streams,
    load_float_model,
    passages,
    perplexity,
    side_method,
    split_documents,
    split_stream,
)
from aios_text.inference import DEFAULT_MODEL, load_array_text_model
from aios_text.uncertainty import Calibration, UncertaintyEstimator, roc_auc

from aios.evolve.adapters import AdapterStore, merge_lora
from aios.models.backbone_numpy import load_arrays

DOMAIN = "python-docstrings"
KINDS = {"lora": LoRAKind, "sidenet": SideNetKind}


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def adapted_float_model(store: AdapterStore, name: str):
    """The torch model with the adapter applied (what generation runs)."""
    model, _, _ = load_float_model(DEFAULT_MODEL)
    adapter = store.load(name)
    if adapter.info.kind == "sidenet":
        options = adapter.info.options
        side_method(int(options["blocks"]), int(options["hidden"])).attach(model.backbone)
        parameters = dict(model.backbone.named_parameters())
        with torch.no_grad():
            for key, value in adapter.tensors.items():
                parameters[key].copy_(torch.from_numpy(value))
        return model.eval()
    weights = {k: v.numpy() for k, v in model.backbone.state_dict().items()}
    merged = merge_lora(weights, adapter)
    model.backbone.load_state_dict({k: torch.from_numpy(v) for k, v in merged.items()})
    return model.eval()


def adaptation(store: AdapterStore, name: str, kind_name: str, reuse: bool,
               held_out: float) -> float:
    if not reuse:
        kind = KINDS[kind_name]()
        decision = kind.evolve(DEFAULT_MODEL, name, sources=[DOMAIN], store=store,
                               min_gain=0.05, max_base_loss=0.02, held_out=held_out)
        print(f"\n1. adaptation (aios evolve {DOMAIN}, {kind.kind}: "
              f"{kind.method().options}, {kind.settings})")
        print(table([tuple(r) for r in decision.table()]))
        print(f"decision: {decision.reason}; time to adapt {decision.seconds:.0f} s "
              f"(1 thread, shared busy CPU); {decision.train_tokens:,} training tokens")
        return decision.seconds
    model, tokenizer, settings = load_float_model(DEFAULT_MODEL)
    length = int(settings["sequence_length"])
    _, check = split_stream(load_corpus([DOMAIN], corpus_cache()), tokenizer, held_out, length,
                            False)
    _, base_check = base_streams(settings, tokenizer, False, replay_documents=1)
    adapted = adapted_float_model(store, name)
    rows = [("", "before (no adapter)", "after (adapter merged)", "change")]
    for label, stream in (("new-domain perplexity (held out)", check),
                          ("base-domain perplexity (check set)", base_check)):
        before = perplexity(model, stream, settings, length, 64)
        after = perplexity(adapted, stream, settings, length, 64)
        rows.append((label, f"{before:.2f}", f"{after:.2f}", f"{after / before - 1:+.1%}"))
    info = store.info(name)
    print(f"\n1. adaptation (adapter {name!r} from {store.directory}, re-scored here)")
    print(table(rows))
    print(f"recorded by aios evolve: {dict(info.metrics)}")
    return float(info.metrics.get("seconds", float("nan")))


def sizes(store: AdapterStore, name: str) -> None:
    info = store.info(name)
    model_bytes = sum(p.stat().st_size for p in DEFAULT_MODEL.glob("*.arrow"))
    adapter_bytes = store.path(name).stat().st_size
    model_parameters = sum(int(v.size) for f in ("backbone.arrow", "text.arrow")
                           for v in load_arrays(DEFAULT_MODEL / f).values())
    print("\n2. sizes")
    print(table([("", "parameters", "bytes on disk"),
                 ("model (int8 linear layers)", f"{model_parameters:,}", f"{model_bytes:,}"),
                 (f"adapter {name} (float32)", f"{info.parameters:,}", f"{adapter_bytes:,}"),
                 ("adapter / model", f"{info.parameters / model_parameters:.2%}",
                  f"{adapter_bytes / model_bytes:.2%}")]))


def uncertainty(base_ids: np.ndarray, new_ids: np.ndarray, count: int) -> None:
    net, tokenizer, _ = load_array_text_model(DEFAULT_MODEL)
    estimator = UncertaintyEstimator(net, tokenizer, Calibration.load(DEFAULT_MODEL))
    rows = [("text length", "base mean", "new mean", "ROC AUC", "base > 1.5", "new > 1.5")]
    for length in (16, 64, 128):
        base = [estimator.score_ids(base_ids[i * length:(i + 1) * length]) for i in range(count)]
        new = [estimator.score_ids(new_ids[i * length:(i + 1) * length]) for i in range(count)]
        rows.append((f"{length} tokens", f"{np.mean(base):.3f}", f"{np.mean(new):.3f}",
                     f"{roc_auc(base, new):.3f}", f"{np.mean(np.array(base) > 1.5):.0%}",
                     f"{np.mean(np.array(new) > 1.5):.0%}"))
    print(f"\n3. uncertainty ({count} held-out texts per domain and length)")
    print(table(rows))


def router(store: AdapterStore, name: str, base_texts: list[str], new_texts: list[str]) -> None:
    net, tokenizer, _ = load_array_text_model(DEFAULT_MODEL)
    adapted = AdaptedModels(net, tokenizer, DEFAULT_MODEL, store.directory)
    stream = [(t, "new") for t in new_texts] + [(t, "base") for t in base_texts]
    order = np.random.default_rng(0).permutation(len(stream))
    picked = {"new": 0, "base": 0}
    started = time.perf_counter()
    for i in order:
        text, domain = stream[i]
        chosen = name in adapted.resolve("auto", text).weights
        picked[domain] += chosen if domain == "new" else not chosen
    ms = 1000 * (time.perf_counter() - started) / len(stream)
    print(f"\n4. router on a mixed stream of {len(stream)} prompts ({ms:.1f} ms per choice)")
    print(table([("prompts", "count", "routed correctly", "goal"),
                 ("new-domain -> adapter", str(len(new_texts)),
                  f"{picked['new'] / len(new_texts):.1%}", ">= 90%"),
                 ("base-domain -> no adapter", str(len(base_texts)),
                  f"{picked['base'] / len(base_texts):.1%}", ">= 90%")]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", default="runs/evolution/adapters")
    parser.add_argument("--name", default="python-docs")
    parser.add_argument("--kind", choices=sorted(KINDS), default="lora")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--texts", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    store = AdapterStore(Path(args.adapters))
    adaptation(store, args.name, args.kind, args.reuse, held_out=0.1)
    sizes(store, args.name)
    _, tokenizer, settings = load_array_text_model(DEFAULT_MODEL)
    base_docs = [d for d in load_corpus(settings["corpus"], corpus_cache())
                 if d.split == "validation"]
    _, new_docs = split_documents(load_corpus([DOMAIN], corpus_cache()), 0.1)
    base_ids = TokenStream.from_documents(base_docs, tokenizer, progress=False).ids
    new_ids = TokenStream.from_documents(new_docs, tokenizer, progress=False).ids
    uncertainty(base_ids, new_ids, args.texts)
    half = args.prompts // 2
    router(store, args.name, passages([d.text for d in base_docs], half, chars=200, seed=1),
           passages([d.text for d in new_docs], half, chars=200, seed=1))


if __name__ == "__main__":
    main()
