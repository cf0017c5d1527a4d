"""The default text model (SmolLM2-135M adapted to block diffusion) against its base model.

    python benchmarks/text.py [--adapted DIR] [--prompts 32] [--new-tokens 128]
                              [--thresholds 0.95 0.9 0.8 0.7 0.5] [--speed-prompts 4]
                              [--rounds 3] [--bound-windows 16] [--quick]
                              [--skip fluency speed cold bound] [--runtime numpy|torch]
                              [--dtype bfloat16]

1. Fluency: `--prompts` everyday prompts x `--new-tokens` new tokens from the adapted model
   (block decoding, confidence threshold, greedy candidates) at each threshold, and from the
   base model as an AR model with `transformers`' `generate` (sampled at temperature 0.8,
   top-p 0.95, and greedy). Every sample is scored by the base model as an AR model
   (generative perplexity), by the share of its words in /usr/share/dict/words, and by its
   share of distinct tokens (repetition lowers perplexity; read the columns together). The
   adapted model runs in `--runtime` (default numpy: what `aios generate` takes on a CPU, int8
   weights and activations; torch: the int8 weights dequantized, in `--dtype`).
   Goal: generative perplexity within 1.5x of the base model's own sampled text, >= 97%
   dictionary words.
2. Speed, batch 1, `--new-tokens` tokens without early stop, interleaved and repeated
   (`--rounds`), median [interquartile range]: the adapted model's block decoding at each
   threshold against the base model's AR decoding with its KV cache (`generate`, greedy),
   float32 and bfloat16; tokens per step (= tokens per forward) shown. Both OpenMP wait
   policies (torch reads OMP_WAIT_POLICY at start, so each runs in its own process). The
   numpy runtime runs in a third process that never imports torch (as `aios generate` does),
   after the two torch ones; its speed-ups are against their AR medians. When
   `llama-cpp-python` is installed, llama.cpp decodes the base model's own GGUF (Q4_1) greedily
   in that process, interleaved with it (reported beside it, never installed by the set-up).
   Goal: >= 2x the base model's AR tokens/s at the fluency goal.
3. Cold start of `aios generate` (the converted model cached), until the text is printed.
4. Validation perplexity: `--bound-windows` windows of 256 tokens of held-out text (the
   validation split of Debian's fortunes, which the adaptation did not train on), after a first
   block of context: the base model's exact perplexity against an upper bound on the adapted
   model's (`aios_text.adapt.scores.perplexity_bound`: the first token of each block from the
   AR head, the rest by the masked-diffusion ELBO, Monte Carlo).

A PNG of quality against tokens per step goes to benchmarks/results/text-quality-speed.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Timing, interleaved, load_line, run_under_wait_policies, table

RESULTS = Path(__file__).with_name("results")
PROMPTS = [
    "Once upon a time", "The weather today is", "My favourite food is", "When I was young, I",
    "The best way to learn a new language is", "Yesterday I went to the market and",
    "In the morning, the city", "She opened the door and saw", "Scientists have found that",
    "The history of the bicycle", "There is a small village where", "I think that friendship",
    "The most important thing about cooking is", "Every year, millions of people",
    "It was a dark and stormy night.", "The children played in the garden while",
    "Water is important because", "The sun rose over the hills and", "A good teacher always",
    "Last summer, my family", "The old man sat on the bench and", "Dogs make good pets because",
    "In the future, cars will", "The book tells the story of", "Music can change the way",
    "The river flowed through the valley", "On Monday morning, the office",
    "The recipe calls for flour, sugar and", "Our planet is home to", "He picked up the phone and",
    "The museum opened a new exhibition about", "Learning to swim is",
]
THRESHOLDS = [0.95, 0.9, 0.8, 0.7, 0.5]


@functools.cache
def load_models(adapted: str, dtype: str = "float32",
                runtime: str = "torch") -> tuple[Any, Any, Any]:
    """(adapted model in `runtime`, base AR network in `dtype`, tokenizer), loaded once per
    process (the fluency and perplexity sections share them)."""
    from aios_text.adapt.base import base_gguf

    from aios.models import cached_conversion, load_pretrained

    model, tokenizer = load_adapted(adapted, dtype, runtime)
    base = load_pretrained(cached_conversion(base_gguf()), dtype=dtype)
    return model, base.network, tokenizer


@functools.cache
def load_adapted(adapted: str, dtype: str = "float32", runtime: str = "torch") -> tuple[Any, Any]:
    from aios_text.adapt.shipping import open_adapted

    model, tokenizer, _ = open_adapted(adapted, dtype=dtype, runtime=runtime)
    return model, tokenizer


def diffusion_sample(model: Any, prompt: list[int], new_tokens: int, threshold: float,
                     stop: bool = True) -> tuple[list[int], float]:
    from aios_text.adapt.decode import generate_blocks

    out = generate_blocks(model, prompt, new_tokens=new_tokens, block_size=8,
                          threshold=threshold, end_id=2 if stop else None, banned=(0, 1))
    steps = len(out.tokens_per_step)
    return out.ids, (len(out.ids) / steps if steps else 0.0)


def ar_sample(network: Any, prompt: list[int], new_tokens: int, *, sampled: bool,
              stop: bool = True, seed: int = 0) -> list[int]:
    import torch

    torch.manual_seed(seed)
    ids = torch.tensor([prompt])
    extra: dict[str, Any] = ({"do_sample": True, "temperature": 0.8, "top_p": 0.95}
                             if sampled else {"do_sample": False})
    if not stop:
        extra["min_new_tokens"] = new_tokens
    with torch.inference_mode():
        out = network.generate(ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=new_tokens, pad_token_id=0, eos_token_id=2,
                               **extra)
    generated = out[0, len(prompt):].tolist()
    return generated[:generated.index(2)] if 2 in generated else generated


def fluency(args: argparse.Namespace) -> list[dict[str, Any]]:
    from aios_text.adapt.scores import dictionary_share, distinct_share, generative_perplexity

    model, base, tokenizer = load_models(args.adapted)
    if (args.runtime, args.dtype) != ("torch", "float32"):  # the adapted model in that runtime
        model = load_adapted(args.adapted, args.dtype, args.runtime)[0]  # and dtype; the base
        # (AR and scorer) stays float32 torch
    prompts = [tokenizer.encode(p).ids for p in PROMPTS[:args.prompts]]
    systems: dict[str, Any] = {
        "base AR, sampled (T 0.8, top-p 0.95)":
            lambda p, i: (ar_sample(base, p, args.new_tokens, sampled=True, seed=i), 1.0),
        "base AR, greedy": lambda p, i: (ar_sample(base, p, args.new_tokens, sampled=False),
                                         1.0)}
    for th in args.thresholds:
        label = (" (numpy, int8)" if args.runtime == "numpy" else
                 "" if args.dtype == "float32" else f" ({args.dtype})")
        systems[f"adapted, threshold {th}{label}"] = (
            lambda p, i, th=th: diffusion_sample(model, p, args.new_tokens, th))
    rows = []
    for name, generate in systems.items():
        outputs, rates = [], []
        for i, prompt in enumerate(prompts):
            ids, rate = generate(prompt, i)
            outputs.append((prompt, ids))
            rates.append(rate)
        texts = [tokenizer.decode(ids) for _, ids in outputs]
        rows.append({"system": name, "gen_ppl": generative_perplexity(base, outputs),
                     "dictionary": dictionary_share(texts),
                     "distinct": distinct_share([ids for _, ids in outputs]),
                     "tokens": sum(len(ids) for _, ids in outputs) / len(outputs),
                     "tokens_per_step": sum(rates) / len(rates), "example": texts[0][:160]})
        print(f"  {name}: gen ppl {rows[-1]['gen_ppl']:.1f}", file=sys.stderr, flush=True)
    return rows


def perplexity_table(args: argparse.Namespace) -> tuple[float, float]:
    """(base exact perplexity, adapted upper bound) on held-out fortunes."""
    import numpy as np
    import torch
    from aios_text.adapt.scores import ar_perplexity, perplexity_bound
    from aios_text.corpus import fortunes

    model, base, tokenizer = load_models(args.adapted)
    ids: list[int] = []
    for document in fortunes():
        if document.split == "validation":
            ids += [*tokenizer.encode(document.text).ids, 2]
    length = 256
    starts = np.linspace(0, len(ids) - length, args.bound_windows).astype(int)
    windows = torch.tensor([ids[s:s + length] for s in starts])
    return (ar_perplexity(base, windows, context=8),
            perplexity_bound(model, windows, 8, samples=4))


def speed_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in its own process (one per OpenMP wait policy); prints JSON on its last line."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    results: dict[str, Any] = {}
    for dtype in ("float32", "bfloat16"):
        model, base, tokenizer = load_models(args.adapted, dtype)
        prompts = [tokenizer.encode(p).ids for p in PROMPTS[:args.speed_prompts]]
        candidates: dict[str, Any] = {
            f"base AR generate ({dtype})": lambda base=base, prompts=prompts: [
                ar_sample(base, p, args.new_tokens, sampled=False, stop=False) for p in prompts]}
        for th in args.thresholds:
            candidates[f"adapted, threshold {th} ({dtype})"] = (
                lambda th=th, model=model, prompts=prompts: [
                    diffusion_sample(model, p, args.new_tokens, th, stop=False) for p in prompts])
        timings = interleaved(candidates, rounds=args.rounds)
        for name, timing in timings.items():
            per_token = Timing(tuple(t / (args.new_tokens * len(prompts))
                                     for t in timing.samples))
            rate = None
            if "adapted" in name:
                th = float(name.split("threshold ")[1].split(" ")[0])
                rates = [diffusion_sample(model, p, args.new_tokens, th, stop=False)[1]
                         for p in prompts]
                rate = sum(rates) / len(rates)
            results[name] = {"ms_per_token": per_token.to_json(), "tokens_per_step": rate}
    return results


def llama_cpp_sampler() -> Any:
    """Greedy AR decoding of the base model's own GGUF file (Q4_1) by llama.cpp, when
    `llama-cpp-python` is installed (it builds from source: `pip install llama-cpp-python`,
    about 15 minutes on 2 cores); None otherwise."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from aios_text.adapt.base import base_gguf

    llm = Llama(model_path=str(base_gguf()), n_ctx=512, n_threads=os.cpu_count() or 1,
                n_batch=512, verbose=False)

    def sample(prompt: list[int], new_tokens: int) -> list[int]:
        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0, reset=True):  # never stops by itself
            out.append(int(token))
            if len(out) == new_tokens:
                return out
        return out

    return sample


def numpy_speed_worker(args: argparse.Namespace) -> dict[str, Any]:
    """The adapted model on the numpy runtime, in a process without torch (as `aios generate`
    runs it on a CPU), and llama.cpp on the base GGUF when installed; prints JSON on its last
    line."""
    model, tokenizer = load_adapted(args.adapted, "float32", "numpy")
    prompts = [tokenizer.encode(p).ids for p in PROMPTS[:args.speed_prompts]]
    candidates = {f"adapted, threshold {th} (numpy, int8)": (
        lambda th=th: [diffusion_sample(model, p, args.new_tokens, th, stop=False)
                       for p in prompts]) for th in args.thresholds}
    llama_cpp = llama_cpp_sampler()
    if llama_cpp is not None:
        candidates[LLAMA_CPP] = lambda: [llama_cpp(p, args.new_tokens) for p in prompts]
    timings = interleaved(candidates, rounds=args.rounds)
    results: dict[str, Any] = {}
    for name, timing in timings.items():
        if name == LLAMA_CPP:
            results[name] = {"ms_per_token": [t / (args.new_tokens * len(prompts))
                                              for t in timing.samples], "tokens_per_step": 1.0}
            continue
        th = float(name.split("threshold ")[1].split(" ")[0])
        rates = [diffusion_sample(model, p, args.new_tokens, th, stop=False)[1] for p in prompts]
        results[name] = {"ms_per_token": [t / (args.new_tokens * len(prompts))
                                          for t in timing.samples],
                         "tokens_per_step": sum(rates) / len(rates)}
    if "torch" in sys.modules:
        raise RuntimeError("the numpy worker imported torch")
    return results


#: The name of llama.cpp's row in the numpy worker's results.
LLAMA_CPP = "base AR, llama.cpp (Q4_1 GGUF, greedy)"


def cold_start() -> float:
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("aios")), "generate",
                           "Once upon a time",
                           "--length", "16"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "AIOS_TEXT_MODEL"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-1000:])
    return time.perf_counter() - start


def plot(rows: list[dict[str, Any]], speed: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adapted = [r for r in rows if r["system"].startswith("adapted")]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([r["tokens_per_step"] for r in adapted], [r["gen_ppl"] for r in adapted], "o-",
            label="adapted (threshold sweep)")
    for r in rows:
        if r["system"].startswith("base AR, sampled"):
            ax.axhline(r["gen_ppl"], color="gray", linestyle="--", label="base AR, sampled")
            ax.axhline(1.5 * r["gen_ppl"], color="red", linestyle=":", label="goal: 1.5x base")
    ax.set_xlabel("tokens per step (forward)")
    ax.set_ylabel("generative perplexity (base SmolLM2)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapted", default="", help="adapted model (default: the shipped one)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    parser.add_argument("--speed-prompts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 prompts, 2 thresholds, 1 round")
    parser.add_argument("--bound-windows", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the adapted model's dtype in the fluency table (torch runtime)")
    parser.add_argument("--runtime", default="numpy", choices=["numpy", "torch"],
                        help="the adapted model's runtime in the fluency table")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["fluency", "speed", "cold", "bound"])
    parser.add_argument("--speed-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.thresholds, args.rounds, args.speed_prompts = 4, [0.9, 0.7], 1, 1
        args.bound_windows = 2
    if args.speed_worker:
        print(json.dumps(speed_worker(args)))
        return
    if args.numpy_worker:
        print(json.dumps(numpy_speed_worker(args)))
        return
    import torch

    print(load_line())
    print(f"torch {torch.__version__}, {os.cpu_count()} cores\n")
    rows: list[dict[str, Any]] = []
    if "fluency" not in args.skip:
        rows = fluency(args)
        print(f"1. Fluency: {args.prompts} prompts x {args.new_tokens} new tokens, scored by "
              "the base model (SmolLM2-135M-Instruct) as an AR model\n")
        print(table([["system", "gen. perplexity", "dictionary words", "distinct tokens",
                      "tokens", "tokens/step"]] +
                    [[r["system"], f"{r['gen_ppl']:.1f}", f"{100 * r['dictionary']:.1f}%",
                      f"{100 * r['distinct']:.1f}%", f"{r['tokens']:.0f}",
                      f"{r['tokens_per_step']:.2f}"] for r in rows]))
        print("\nfirst sample of each:")
        for r in rows:
            print(f"  {r['system']}: {PROMPTS[0]}{r['example']!r}")
    speed: dict[str, Any] = {}
    if "speed" not in args.skip:
        argv = [__file__, "--speed-worker", "--adapted", args.adapted, "--new-tokens",
                str(args.new_tokens), "--speed-prompts", str(args.speed_prompts), "--rounds",
                str(args.rounds), "--thresholds", *map(str, args.thresholds)]
        speed = run_under_wait_policies(argv)
        print(f"\n2. Speed: batch 1, {args.new_tokens} new tokens (no early stop), "
              f"{args.speed_prompts} prompts x {args.rounds} interleaved rounds; "
              "ms per token, median [IQR]; x = speed-up over the base model's AR decoding "
              "in the same dtype and process\n")
        header = ["system", *(f"OMP_WAIT_POLICY={p}" for p in speed), "tokens/step"]
        lines = [header]
        first = next(iter(speed.values()))
        for name in first:
            cells = [name]
            for result in speed.values():
                timing = Timing(tuple(result[name]["ms_per_token"]))
                dtype = name[name.rindex("(") + 1:-1]
                ar = Timing(tuple(result[f"base AR generate ({dtype})"]["ms_per_token"]))
                cells.append(f"{timing.cell(digits=1)} ({ar.median / timing.median:.2f}x)")
            rate = first[name]["tokens_per_step"]
            cells.append("1.00" if rate is None else f"{rate:.2f}")
            lines.append(cells)
        print(table(lines))
        done = subprocess.run([sys.executable, *argv[:1], "--numpy-worker", *argv[2:]],
                              capture_output=True, text=True, check=True)
        numpy_speed = json.loads(done.stdout.strip().splitlines()[-1])
        ar = {(policy, dtype): Timing(tuple(result[f"base AR generate ({dtype})"]
                                             ["ms_per_token"])).median
              for policy, result in speed.items() for dtype in ("float32", "bfloat16")}
        print("\nThe numpy runtime (int8 weights and activations, no torch in the process; "
              "llama.cpp beside it in that process when llama-cpp-python is installed): ms "
              "per token, median [IQR]; x = speed-up over the AR medians above (float32 / "
              "bfloat16 base, each wait policy)\n")
        lines = [["system", "ms per token", *(f"x AR f32 / bf16, {p}" for p in speed),
                  "tokens/step"]]
        for name, result in numpy_speed.items():
            timing = Timing(tuple(result["ms_per_token"]))
            lines.append([name, timing.cell(digits=1),
                          *(f"{ar[(p, 'float32')] / timing.median:.2f}x / "
                            f"{ar[(p, 'bfloat16')] / timing.median:.2f}x" for p in speed),
                          f"{result['tokens_per_step']:.2f}"])
        print(table(lines))
        if LLAMA_CPP in numpy_speed:
            reference = Timing(tuple(numpy_speed[LLAMA_CPP]["ms_per_token"])).median
            print("\nagainst llama.cpp: " + ", ".join(
                f"{name.split(' (')[0]} {reference / Timing(tuple(r['ms_per_token'])).median:.2f}x"
                for name, r in numpy_speed.items() if name != LLAMA_CPP))
        else:
            print("\nllama.cpp: not installed (pip install llama-cpp-python) - no row")
    if rows and speed:
        plot(rows, speed, RESULTS / "text-quality-speed.png")
    if "cold" not in args.skip:
        times = [cold_start() for _ in range(3)]
        print(f"\n3. Cold start of `aios generate` (16 tokens, converted model cached): "
              f"median {sorted(times)[1]:.2f} s of {', '.join(f'{t:.2f}' for t in times)}")
    if "bound" not in args.skip:
        base_ppl, bound = perplexity_table(args)
        print(f"\n4. Validation perplexity, {args.bound_windows} windows x 256 tokens of "
              "fortunes' validation split (first block = context):\n")
        print(table([["model", "perplexity"],
                     ["base AR (exact)", f"{base_ppl:.2f}"],
                     ["adapted, blocks of 8 (upper bound)", f"{bound:.2f}"]]))
        print(f"\nbound / base: {bound / base_ppl:.2f}x")


if __name__ == "__main__":
    main()
