"""ArrowQuant benchmark: native vs NumPy reference vs torch, baselines measured in the same run.

    python benchmarks/quant.py [--size 4096] [--model-layers 6] [--rounds 15]
    python benchmarks/quant.py --only linear        # just the layer and model forward tables

Rows: quantize and dequantize throughput (4096x4096 float32, group 128) native vs the NumPy
reference; reconstruction error per bit width; on a whole synthetic model, quantize time, file
size and load time vs torch.load. Then the quantized linear layer (int8 activations, int8 and
int4 weights, and the exact weight-only int4 path) against torch float32 and bfloat16
`nn.Linear` at the text model's shapes and 4096 x 4096, batch 1 and 32; and the forward of a
whole backbone of the text model's widths (576 wide, 1536 MLP, 30 blocks) over a 32-position
block, float32 vs its linear layers int8 / int4.

Timing follows `benchmarks/measure.py`: load average first (warning above 0.5), candidates
interleaved, median [interquartile range] of `--rounds` rounds, and every torch comparison run
twice, in fresh processes with ``OMP_WAIT_POLICY=PASSIVE`` and with torch's default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aios.io.weights import load_weights, save_weights
from aios.quant import QuantizedTensor, ReferenceQuantizer
from aios.quant.linear import QuantizedLinear

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (
    WAIT_POLICIES,
    Timing,
    calls_for,
    interleaved,
    load_line,
    markdown_table,
    run_under_wait_policies,
)

#: (out features, in features): the text model's attention, MLP up / down, and a large layer.
LINEAR_SHAPES = ((576, 576), (1536, 576), (576, 1536), (4096, 4096))


def native_quantizer(**options):
    try:
        from aios_native.quant import NativeQuantizer
    except ImportError:
        sys.exit("aios_native is not installed; run `bash scripts/dev setup` first")
    return NativeQuantizer(**options)


def matrix_rows(size: int, repeat: int, progress: tqdm) -> list[tuple[str, ...]]:
    w = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    n = w.size
    rows = []
    out = np.ones_like(w)  # touched once, so page faults stay out of the timings
    for bits, group in ((8, 128), (4, 128), (4, 64), (2, 128)):
        ref = ReferenceQuantizer(bits=bits, group_size=group)
        fast = native_quantizer(bits=bits, group_size=group)
        q = fast.quantize(w)
        label = f"int{bits} g{group}"
        t = interleaved({"ref": lambda ref=ref: ref.quantize(w),
                         "fast": lambda fast=fast: fast.quantize(w)}, max(2, repeat // 2))
        t_ref, t_fast = t["ref"].median, t["fast"].median
        rows.append((f"quantize {label} ({size}x{size})", f"{n / t_fast / 1e9:.2f} G w/s",
                     f"{n / t_ref / 1e9:.3f} G w/s (NumPy reference)", f"{t_ref / t_fast:.1f}x"))
        t = interleaved({"ref": lambda ref=ref, q=q: ref.dequantize(q, out=out),
                         "fast": lambda fast=fast, q=q: fast.dequantize(q, out=out)}, repeat)
        t_ref, t_fast = t["ref"].median, t["fast"].median
        rows.append((f"dequantize {label} into a buffer", f"{n / t_fast / 1e9:.2f} G w/s",
                     f"{n / t_ref / 1e9:.3f} G w/s (NumPy reference)", f"{t_ref / t_fast:.1f}x"))
        progress.update()
    return rows


def error_rows(size: int, progress: tqdm) -> list[tuple[str, ...]]:
    w = np.random.default_rng(1).normal(size=(size, size)).astype(np.float32)
    ref = w.astype(np.float64).reshape(-1)
    rows = []
    for bits in (8, 4, 2):
        for symmetric in (False, True):
            fast = native_quantizer(bits=bits, group_size=128, symmetric=symmetric)
            restored = fast.dequantize(fast.quantize(w)).astype(np.float64).reshape(-1)
            mae = np.abs(restored - ref).mean() / np.abs(ref).mean()
            cosine = restored @ ref / np.linalg.norm(restored) / np.linalg.norm(ref)
            mode = "sym" if symmetric else "asym"
            rows.append((f"error int{bits}-{mode} g128 (gaussian {size}x{size})",
                         f"rel MAE {mae:.4f}", f"cosine {cosine:.5f}", "-"))
        progress.update()
    return rows


def synthetic_model(layers: int, width: int) -> dict[str, torch.Tensor]:
    """Transformer-shaped weights: per layer q/k/v/o (width^2) and an MLP (4 width)."""
    torch.manual_seed(0)
    state = {"embed.weight": torch.randn(8192, width) * 0.02}
    for i in range(layers):
        for name in ("q", "k", "v", "o"):
            state[f"layers.{i}.attn.{name}.weight"] = torch.randn(width, width) * 0.02
        state[f"layers.{i}.mlp.up.weight"] = torch.randn(4 * width, width) * 0.02
        state[f"layers.{i}.mlp.down.weight"] = torch.randn(width, 4 * width) * 0.02
        state[f"layers.{i}.norm.weight"] = torch.ones(width)
    return state


def model_rows(layers: int, width: int, repeat: int, progress: tqdm) -> list[tuple[str, ...]]:
    state = synthetic_model(layers, width)
    params = sum(t.numel() for t in state.values())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pt = Path(tmp) / "model.pt"
        torch.save(state, pt)
        for bits in (4, 2):
            fast = native_quantizer(bits=bits, group_size=128)
            ref = ReferenceQuantizer(bits=bits, group_size=128)
            start = time.perf_counter()
            quantized = fast.quantize_model(state)
            t_fast = time.perf_counter() - start
            start = time.perf_counter()
            ref.quantize_model(state)
            t_ref = time.perf_counter() - start
            path = save_weights(Path(tmp) / f"model{bits}.arrow", quantized)
            packed = [q for q in quantized.values() if isinstance(q, QuantizedTensor)]
            t = interleaved({
                "fast": lambda fast=fast, packed=packed: [fast.dequantize(q) for q in packed],
                "ref": lambda ref=ref, packed=packed: [ref.dequantize(q) for q in packed]},
                max(2, repeat // 2))
            t_deq_fast, t_deq_ref = t["fast"].median, t["ref"].median

            def open_lazy(path=path):
                return load_weights(path)

            def open_all(path=path):
                weights = load_weights(path)
                weights.verify()  # every checksum, on all cores
                return [weights[name] for name in weights]

            t = interleaved({"lazy": open_lazy, "all": open_all,
                             "torch": lambda: torch.load(pt, map_location="cpu",
                                                         weights_only=True)}, repeat)
            t_lazy, t_all, t_torch = t["lazy"].median, t["all"].median, t["torch"].median
            mb = os.path.getsize(path) / 2**20
            rows.append((f"model {params / 1e6:.0f}M params: quantize int{bits} g128",
                         f"{t_fast:.2f} s native", f"{t_ref:.2f} s NumPy reference",
                         f"{t_ref / t_fast:.1f}x"))
            rows.append((f"model int{bits}: dequantize every quantized tensor",
                         f"{t_deq_fast * 1e3:.1f} ms native", f"{t_deq_ref * 1e3:.1f} ms NumPy "
                         f"reference", f"{t_deq_ref / t_deq_fast:.1f}x"))
            rows.append((f"model int{bits}: file size", f"{mb:.1f} MiB",
                         f"float32 .pt {os.path.getsize(pt) / 2**20:.1f} MiB",
                         f"{os.path.getsize(pt) / 2**20 / mb:.1f}x smaller"))
            rows.append((f"model int{bits}: load (mmap; + read and verify every tensor)",
                         f"{t_lazy * 1e3:.2f} ms; {t_all * 1e3:.1f} ms",
                         f"torch.load float32 .pt {t_torch * 1e3:.1f} ms",
                         f"{t_torch / t_lazy:.0f}x; {t_torch / t_all:.1f}x"))
            progress.update()
    return rows


def linear_results(shapes: tuple[tuple[int, int], ...], batches: tuple[int, ...],
                   rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per "out x in, batch": seconds of each candidate, interleaved."""
    torch.manual_seed(0)
    results = {}
    with torch.no_grad():
        for out_f, in_f in shapes:
            linear = torch.nn.Linear(in_f, out_f, bias=False)
            bf16 = torch.nn.Linear(in_f, out_f, bias=False).to(torch.bfloat16)
            bf16.weight.copy_(linear.weight)
            layers = {
                "int8": QuantizedLinear.from_linear(linear, native_quantizer(bits=8)),
                "int4": QuantizedLinear.from_linear(linear, native_quantizer(bits=4)),
                "int4 weight-only": QuantizedLinear.from_linear(
                    linear, native_quantizer(bits=4), activations="float"),
            }
            for batch in batches:
                x = torch.randn(batch, in_f)
                xb = x.to(torch.bfloat16)
                fns = {"float32": lambda x=x, f=linear: f(x),
                       "bfloat16": lambda xb=xb, f=bf16: f(xb)}
                fns.update({name: (lambda x=x, layer=layer: layer(x))
                            for name, layer in layers.items()})
                calls = calls_for(fns["float32"])
                timings = interleaved(fns, rounds, calls)
                results[f"{out_f} x {in_f}, {batch}"] = {
                    name: t.to_json() for name, t in timings.items()}
    return results


def model_results(positions: int, rounds: int) -> dict[str, object]:
    """The text model's widths as an aios backbone (576 wide, 1536 MLP, 9 heads, 30 blocks):
    one forward over `positions` positions, float32 against its linear layers int8 / int4, and
    how far each quantized output moves from the float one (random weights: not perplexity)."""
    from aios.models.backbone import Backbone
    from aios.models.backbone_config import BackboneConfig
    from aios.quant.linear import quantize_linears

    torch.manual_seed(0)
    config = BackboneConfig(dim=576, depth=30, heads=9, ffn_dim=1536)
    float_net = Backbone(config).eval()
    with torch.no_grad():  # the modulation weights start at zero; give them values
        for p in float_net.parameters():
            p.add_(0.02 * torch.randn(p.shape))
    state = float_net.state_dict()
    nets = {"float32": float_net}
    for bits in (8, 4):
        net = Backbone(config).eval()
        net.load_state_dict(state)
        nets[f"int{bits}"] = quantize_linears(net, native_quantizer(bits=bits))
    x, t = torch.randn(1, positions, 576), torch.rand(1)
    with torch.no_grad():
        outputs = {name: net(x, t, 0) for name, net in nets.items()}
        timings = interleaved({name: (lambda net=net: net(x, t, 0))
                               for name, net in nets.items()}, rounds)
    reference = outputs["float32"]
    error = {name: float((out - reference).norm() / reference.norm())
             for name, out in outputs.items()}
    params = sum(p.numel() for p in float_net.parameters())
    return {"params": params, "times": {n: t.to_json() for n, t in timings.items()},
            "relative_error": error}


def text_perplexity_rows(windows: int) -> list[tuple[str, ...]]:
    """The shipped text model (int8 weights) scored on its held-out windows with exact float
    inputs to its linear layers and with int8 activations: what the integer kernels cost in
    perplexity (the bound exp(NELBO), same windows and masks for both)."""
    from aios_text.data import evaluate_nelbo
    from aios_text.evaluate import held_out_stream
    from aios_text.inference import DEFAULT_MODEL
    from aios_text.model_dir import load_text_model

    from aios.quant.linear import set_activations
    from aios.schedules import masking_schedule

    model, tokenizer, settings = load_text_model(DEFAULT_MODEL)
    stream = held_out_stream(tokenizer, settings, None, progress=False)
    alpha = masking_schedule(settings.get("schedule", "linear")).alpha
    length = int(settings["sequence_length"])
    perplexity = {}
    for mode in ("float", "int8"):
        set_activations(model, mode)
        nll = evaluate_nelbo(model, stream, alpha, tokenizer.mask_id, length=length,
                             max_windows=windows)
        perplexity[mode] = float(np.exp(nll))
    change = 100 * (perplexity["int8"] / perplexity["float"] - 1)
    params = sum(p.numel() for p in model.parameters()) + sum(
        m.weight_q.rows * m.weight_q.cols for m in model.modules()
        if isinstance(m, QuantizedLinear))
    return [(f"shipped text model ({params / 1e6:.1f}M params, int8 weights), perplexity bound "
             f"on {windows} held-out windows", f"int8 activations {perplexity['int8']:.3f}",
             f"exact float inputs {perplexity['float']:.3f}", f"{change:+.2f}% (goal within 1%)")]


def worker(args: argparse.Namespace) -> None:
    """Measure the torch comparisons in this process (its OMP_WAIT_POLICY is the parent's
    choice) and print them as one JSON line."""
    torch.set_num_threads(os.cpu_count() or 1)
    print(json.dumps({
        "linear": linear_results(LINEAR_SHAPES, tuple(args.batches), args.rounds),
        "model": model_results(args.positions, max(3, args.rounds // 3)),
        "threads": {"torch": torch.get_num_threads(), "native": _native_threads()},
    }))


def _native_threads() -> int:
    import aios_native

    return aios_native.thread_count()


def torch_tables(results: dict[str, dict]) -> str:
    """The linear and model tables, one column group per wait policy."""
    lines = []
    for policy, result in results.items():
        lines.append(f"\n### torch with OMP_WAIT_POLICY={policy} "
                     f"(threads: torch {result['threads']['torch']}, "
                     f"native {result['threads']['native']})\n")
        names = ("float32", "bfloat16", "int8", "int4", "int4 weight-only")
        rows = [("out x in, batch", *names)]
        for key, candidates in result["linear"].items():
            timings = {n: Timing(tuple(candidates[n])) for n in names}
            base = timings["float32"].median
            rows.append((key, *(f"{timings[n].cell()} ({base / timings[n].median:.2f}x)"
                                for n in names)))
        lines.append(markdown_table(rows))
        model = result["model"]
        rows = [("backbone forward (576 / 1536, 30 blocks, "
                 f"{model['params'] / 1e6:.0f}M params)", "time", "vs float32",
                 "relative output error")]
        base = Timing(tuple(model["times"]["float32"])).median
        for name, samples in model["times"].items():
            t = Timing(tuple(samples))
            rows.append((name, t.cell(digits=1), f"{base / t.median:.2f}x",
                         f"{model['relative_error'][name]:.4f}"))
        lines.append("")
        lines.append(markdown_table(rows))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="matrix side (default 4096)")
    parser.add_argument("--model-layers", type=int, default=6, help="layers of the model")
    parser.add_argument("--model-width", type=int, default=768, help="width of the model")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per throughput row")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds per layer comparison (median of these)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--positions", type=int, default=32, help="block of the model forward")
    parser.add_argument("--only", choices=("all", "linear", "perplexity"), default="all")
    parser.add_argument("--windows", type=int, default=64,
                        help="held-out windows of the text model's perplexity")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from aios_native.quant import dot_isa

    import aios_native

    print(load_line())
    print(f"native threads: {aios_native.thread_count()}, int8 products on: {dot_isa()}, "
          f"SIMD (simsimd): {', '.join(aios_native.enabled_simd()) or 'none'}")
    if args.only == "all":
        progress = tqdm(total=4 + 3 + 2, desc="benchmarking", unit="step")
        rows = [("what", "aios", "baseline (same run)", "speed-up / ratio")]
        rows += matrix_rows(args.size, args.repeat, progress)
        rows += error_rows(args.size, progress)
        rows += model_rows(args.model_layers, args.model_width, args.repeat, progress)
        progress.close()
        print(markdown_table(rows))
    if args.only in ("all", "perplexity"):
        rows = [("what", "aios", "baseline (same run)", "change")]
        print(markdown_table(rows + text_perplexity_rows(args.windows)))
        if args.only == "perplexity":
            return
    argv = [__file__, "--worker", "--rounds", str(args.rounds), "--positions",
            str(args.positions), "--batches", *map(str, args.batches)]
    print(f"\nlinear layers and model forward, torch under {' and '.join(WAIT_POLICIES)} "
          "OpenMP wait policies (one process each) ...", flush=True)
    print(torch_tables(run_under_wait_policies(argv)))
    print(f"\n{load_line()}  (after)")


if __name__ == "__main__":
    main()
