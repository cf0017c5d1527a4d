"""The text model: quality against its autoregressive baseline, and speed on this CPU.

    python benchmarks/text_tiny.py [--model DIR] [--baseline DIR] [--samples N] [--quick]

1. Perplexity: the diffusion model's validation perplexity *bound* (exp of the negative ELBO)
   beside the autoregressive baseline's exact perplexity, on the same held-out windows
   (`aios eval text`). Goal: the bound within 20% of the baseline (stretch: 10%).
2. Generative perplexity: N prompts, 128 new tokens each, for every discrete sampler at 4, 8,
   16, 32 and 128 steps, scored by the AR baseline. "distinct" is the share of distinct tokens
   per sample (repetition lowers generative perplexity, so read the two together).
3. Speed, batch 1, one prompt, 128 new tokens, end to end through `ArrowEngine.diffuse` (model
   load excluded and reported separately): milliseconds and tokens/s per sampler and step count,
   with "calls" the network evaluations and "positions" the sequence positions they computed
   (the prefix cache of `semi-ar` shows up there). Goal: under 150 ms at a step count whose
   generative perplexity is within 1.3x of the same sampler's 128-step result.
4. Cold start: `aios generate` in a fresh process, until the text is printed.
5. Quantized weights (ArrowQuant's goals): the float model's perplexity bound beside the same
   model with its linear layers at int8, int4, and int4 with GPTQ error correction (calibration
   inputs recorded from the float model on held-out windows that are not scored). Goals: int8
   within 1% of float, int4 within 10%, int4 + GPTQ within 5%. Needs the float model
   (`runs/text/model`, written by `aios train text`); skipped when it is missing.

A PNG of generative perplexity against steps goes to benchmarks/results/text-genppl.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aios_text.evaluate import evaluate_command, generative_perplexity
from aios_text.inference import DEFAULT_MODEL
from aios_text.model_dir import load_text_model
from tqdm import tqdm

from aios.config import load_config
from aios.engine import ArrowEngine
from aios.registry import default_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import table

SAMPLERS = ["mdlm", "mdlm-cache", "low-confidence", "threshold", "semi-ar", "remdm"]
PROMPTS = ["Once upon a time", "And the LORD said unto", "To be, or not to be", "The secret of",
           "KING HENRY:", "Love is", "In the beginning", "A fool and his money"]
RESULTS = Path(__file__).with_name("results")


def make_engine(model: Path, sampler: str, *overrides: str) -> ArrowEngine:
    registry = default_registry()
    config = load_config(overrides=["head.name=text", f"head.model={model}",
                                    f"sampler.name={sampler}", *overrides], registry=registry)
    return ArrowEngine.from_config(config, registry=registry)


def generate_rows(engine: ArrowEngine, prompts: list[str], steps: int, length: int,
                  seed: int) -> tuple[list[list[int]], list[int]]:
    """Token ids (prompt + generated, cut at EOS) of one batch, and each prompt's length."""
    head = engine.head
    final: dict[str, Any] = {}
    engine.diffuse(prompts, num_steps=steps, seed=seed, length=length,
                   callback=lambda i, n, state: final.update(state=state))
    tokens = np.atleast_2d(final["state"].tokens)
    rows, starts = [], []
    for prompt, row in zip(prompts, tokens, strict=True):
        ids = [int(i) for i in row if i != head.tokenizer.pad_id]
        if head.tokenizer.eos_id in ids:
            ids = ids[: ids.index(head.tokenizer.eos_id) + 1]
        rows.append(ids)
        starts.append(len(head.tokenizer.encode(prompt)))
    return rows, starts


def distinct(rows: list[list[int]], starts: list[int]) -> float:
    shares = [len(set(r[s:])) / len(r[s:]) for r, s in zip(rows, starts, strict=True)
              if len(r) > s]
    return float(np.mean(shares)) if shares else 0.0


def time_one(engine: ArrowEngine, steps: int, length: int, repeats: int) -> tuple[float, int, int]:
    """Best wall time (s) of one 128-token generation, its network calls and positions."""
    best = float("inf")
    for r in range(repeats):
        engine.head.calls = engine.head.positions = 0
        start = time.perf_counter()
        engine.diffuse(PROMPTS[0], num_steps=steps, seed=r, length=length)
        best = min(best, time.perf_counter() - start)
    return best, engine.head.calls, engine.head.positions


def cold_start(model: Path, repeats: int) -> float:
    aios = Path(sys.executable).with_name("aios")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(aios), "--set", f"head.model={model}", "generate", "Once upon a time",
                        "--steps", "8", "--length", "32", "--seed", "0"],
                       check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--baseline", type=Path, default=Path("runs/text-ar/model"),
                        help="the AR baseline's model directory (aios train text --recipe "
                             "aios_text/recipes/autoregressive.yaml --out runs/text-ar)")
    parser.add_argument("--float-model", type=Path, default=Path("runs/text/model"),
                        help="the float weights of the model, for the quantization rows")
    parser.add_argument("--samples", type=int, default=8, help="prompts per generation batch")
    parser.add_argument("--length", type=int, default=128, help="new tokens per sample")
    parser.add_argument("--quick", action="store_true", help="fewer step counts and repeats")
    args = parser.parse_args()
    steps_list = [4, 16] if args.quick else [4, 8, 16, 32, 128]
    repeats = 1 if args.quick else 3
    prompts = (PROMPTS * (args.samples // len(PROMPTS) + 1))[: args.samples]
    print(f"model {args.model}, baseline {args.baseline}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs\n")

    print("1. Validation perplexity (same held-out windows)")
    scores = evaluate_command(model=str(args.model), baseline=str(args.baseline), progress=False)
    print(table([["model", "objective", "perplexity", "is"],
                 ["diffusion (" + str(args.model) + ")", "diffusion",
                  scores["model_perplexity"], scores["model_perplexity_is"]],
                 ["baseline (" + str(args.baseline) + ")", "autoregressive",
                  scores["baseline_perplexity"], scores["baseline_perplexity_is"]]]))
    print(f"ratio bound/baseline: {scores['perplexity_ratio_model_to_baseline']:.3f} "
          f"(goal <= 1.20, stretch <= 1.10); {scores['tokens_scored']} tokens scored\n")

    scorer, _, _ = load_text_model(args.baseline)
    started = time.perf_counter()
    load_engine = make_engine(args.model, "mdlm")
    load_seconds = time.perf_counter() - started
    del load_engine
    quality: dict[tuple[str, int], float] = {}
    rows_out: list[list[Any]] = [["sampler", "steps", "gen. perplexity", "distinct", "ms/128 tok",
                                  "tokens/s", "calls", "positions"]]
    runs = [(name, steps, True) for name in SAMPLERS for steps in steps_list]
    runs += [("semi-ar", steps, False) for steps in steps_list]
    bar = tqdm(runs, desc="generating", unit="run")
    for name, steps, cache in bar:
        label = name if cache or name != "semi-ar" else "semi-ar (no KV cache)"
        bar.set_description(f"{label} {steps} steps")
        engine = make_engine(args.model, name, f"head.prefix_cache={str(cache).lower()}")
        rows, starts = generate_rows(engine, prompts, steps, args.length, seed=0)
        ppl = generative_perplexity(scorer, rows, starts)
        quality[(label, steps)] = ppl
        seconds, calls, positions = time_one(engine, steps, args.length, repeats)
        rows_out.append([label, steps, f"{ppl:.1f}", f"{distinct(rows, starts):.2f}",
                         f"{seconds * 1000:.0f}", f"{args.length / seconds:.0f}", calls,
                         positions])
    print("2-3. Generative perplexity (scored by the AR baseline) and speed, batch 1")
    print(table(rows_out))
    print(f"model load (engine from config, in process): {load_seconds * 1000:.0f} ms\n")
    print(goal_lines(rows_out, quality, max(steps_list)))
    print(f"\n4. Cold start (fresh `aios generate`, 8 steps, 32 tokens, best of {repeats}): "
          f"{cold_start(args.model, repeats):.2f} s (goal < 2 s)")
    plot(quality, steps_list)
    if args.float_model.exists():
        print("\n5. Quantized linear layers: validation perplexity bound (same windows)")
        print(quantization_table(args.float_model))
    else:
        print(f"\n5. skipped: no float model at {args.float_model}")


def quantization_table(path: Path, windows: int = 256, calibration_windows: int = 16) -> str:
    from aios_text.data import evaluate_nelbo
    from aios_text.evaluate import held_out_stream

    from aios.quant.linear import best_quantizer
    from aios.schedules import masking_schedule

    model, tokenizer, settings = load_text_model(path)
    length = int(settings["sequence_length"])
    stream = held_out_stream(tokenizer, settings, None, progress=False)
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    chunks = stream.chunks(length)
    calibration = record_linear_inputs(model, torch.as_tensor(
        chunks[windows:windows + calibration_windows], dtype=torch.long), tokenizer.mask_id)
    variants = [("float32", None, False), ("int8", 8, False), ("int4", 4, False),
                ("int4 + GPTQ", 4, True)]
    rows: list[list[Any]] = [["weights", "perplexity bound", "vs float", "goal"]]
    reference = None
    goals = {"int8": "within 1%", "int4": "within 10%", "int4 + GPTQ": "within 5%"}
    for label, bits, gptq in tqdm(variants, desc="quantized perplexity"):
        net, _, _ = load_text_model(path)
        if bits is not None:
            quantizer = best_quantizer(bits=bits, group_size=64, error_correction=gptq)
            quantize_in_place(net, quantizer, calibration if gptq else None)
        nll = evaluate_nelbo(net, stream, alpha, tokenizer.mask_id, length=length,
                             max_windows=windows)
        ppl = float(np.exp(nll))
        reference = reference or ppl
        rows.append([label, f"{ppl:.2f}", f"{100 * (ppl / reference - 1):+.2f}%",
                     goals.get(label, "-")])
    return table(rows)


def record_linear_inputs(model: torch.nn.Module, windows: torch.Tensor,
                         mask_id: int) -> dict[str, np.ndarray]:
    """Inputs of every linear layer on half-masked held-out windows (GPTQ's calibration)."""
    seen: dict[str, list[np.ndarray]] = {}
    hooks = [module.register_forward_hook(
        lambda m, inputs, out, name=name: seen.setdefault(name, []).append(
            inputs[0].reshape(-1, inputs[0].shape[-1]).numpy().copy()))
        for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    generator = torch.Generator().manual_seed(0)
    masked = windows.clone()
    masked[torch.rand(windows.shape, generator=generator) < 0.5] = mask_id
    with torch.no_grad():
        model(masked, torch.full((len(windows),), 0.5))
    for hook in hooks:
        hook.remove()
    return {name: np.concatenate(parts) for name, parts in seen.items()}


def quantize_in_place(model: torch.nn.Module, quantizer: Any,
                      calibration: dict[str, np.ndarray] | None) -> None:
    """Round every linear weight the quantizer does not keep through its codes (float again)."""
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        weight = module.weight.detach().numpy()
        if quantizer.keeps(f"{name}.weight", weight):
            continue
        codes = quantizer.quantize(weight, name=name, calibration=None if calibration is None
                                   else calibration[name])
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(quantizer.dequantize(codes)))


def goal_lines(rows: list[list[Any]], quality: dict[tuple[str, int], float], top: int) -> str:
    """Per sampler: the fastest step count within 1.3x of its own top-step perplexity."""
    lines = ["Fastest setting per sampler within 1.3x of its own "
             f"{top}-step generative perplexity (goal: < 150 ms):"]
    for label in dict.fromkeys(r[0] for r in rows[1:]):
        ok = [r for r in rows[1:] if r[0] == label and quality[(label, r[1])]
              <= 1.3 * quality[(label, top)]]
        best = min(ok, key=lambda r: float(r[4]))
        lines.append(f"  {label}: {best[1]} steps, {best[4]} ms, gen. perplexity {best[2]} "
                     f"(vs {quality[(label, top)]:.1f})")
    return "\n".join(lines)


def plot(quality: dict[tuple[str, int], float], steps_list: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(k[0] for k in quality):
        axes.plot(steps_list, [quality[(label, s)] for s in steps_list], marker="o", label=label)
    axes.set(xscale="log", xlabel="steps", ylabel="generative perplexity (AR scorer)",
             title="aios-text default model: 128 new tokens")
    axes.set_xticks(steps_list, [str(s) for s in steps_list])
    axes.legend(fontsize=8)
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(RESULTS / "text-genppl.png", dpi=120)
    print(f"wrote {RESULTS / 'text-genppl.png'}")


if __name__ == "__main__":
    main()
