"""ArrowQuant benchmark: native vs NumPy reference vs torch, baselines measured in the same run.

    python benchmarks/quant.py [--size 4096] [--model-layers 6] [--repeat 5]

Rows: quantize and dequantize throughput (4096x4096 float32, group 128) native vs the NumPy
reference; the quantized linear layer's forward at batch 1 vs torch float32 nn.Linear and torch's
dynamic int8 quantization; reconstruction error per bit width; on a whole synthetic model
(transformer-shaped linears), quantize time, file size and load time vs torch.load. Timings
are the median of `--repeat` runs after a warm-up; the machine's other load shows in them.

torch's OpenMP threads busy-wait for a while after each parallel region and then compete with
the native kernel's rayon threads for the same cores; unless told otherwise the benchmark sets
``OMP_WAIT_POLICY=PASSIVE`` (before torch loads) so that both sides get the cores they ask for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads

import numpy as np
import torch
from tqdm import tqdm

from aios.io.weights import load_weights, save_weights
from aios.quant import QuantizedTensor, ReferenceQuantizer
from aios.quant.linear import QuantizedLinear


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def native_quantizer(**options):
    try:
        from aios_native.quant import NativeQuantizer
    except ImportError:
        sys.exit("aios_native is not installed; run `bash scripts/dev setup` first")
    return NativeQuantizer(**options)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


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
        t_ref = median_seconds(lambda ref=ref: ref.quantize(w), max(1, repeat // 2))
        t_fast = median_seconds(lambda fast=fast: fast.quantize(w), repeat)
        rows.append((f"quantize {label} ({size}x{size})", f"{n / t_fast / 1e9:.2f} G w/s",
                     f"{n / t_ref / 1e9:.3f} G w/s (NumPy reference)", f"{t_ref / t_fast:.1f}x"))
        t_ref = median_seconds(lambda ref=ref, q=q: ref.dequantize(q, out=out), repeat)
        t_fast = median_seconds(lambda fast=fast, q=q: fast.dequantize(q, out=out), repeat)
        rows.append((f"dequantize {label} into a buffer", f"{n / t_fast / 1e9:.2f} G w/s",
                     f"{n / t_ref / 1e9:.3f} G w/s (NumPy reference)", f"{t_ref / t_fast:.1f}x"))
        progress.update()
    return rows


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median time of each function, calling them in turn each round, so that load from other
    processes on a shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def linear_rows(size: int, repeat: int, progress: tqdm) -> list[tuple[str, ...]]:
    torch.manual_seed(0)
    linear = torch.nn.Linear(size, size, bias=False)
    layers = {bits: QuantizedLinear.from_linear(linear, native_quantizer(bits=bits, group_size=128))
              for bits in (8, 4, 2)}
    try:
        dynamic = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)
    except (RuntimeError, AttributeError):  # no quantized engine on this CPU
        dynamic = None
    rows = []
    with torch.no_grad():
        for batch in (1, 8):
            x = torch.randn(batch, size)
            fns = {"float": lambda x=x: linear(x)}
            if dynamic is not None:
                fns["dynamic"] = lambda x=x: dynamic(x)
            fns.update({f"int{bits}": (lambda x=x, layer=layer: layer(x))
                        for bits, layer in layers.items()})
            t = interleaved_medians(fns, repeat * 8)
            t_dyn = t.get("dynamic", float("nan"))
            dyn = f"{t_dyn * 1e3:.2f} ms" if dynamic is not None else "unavailable"
            for bits in layers:
                t_q = t[f"int{bits}"]
                rows.append((
                    f"linear {size}x{size} batch {batch}, int{bits} g128 fused",
                    f"{t_q * 1e3:.2f} ms",
                    f"float32 nn.Linear {t['float'] * 1e3:.2f} ms; torch dynamic int8 {dyn}",
                    f"{t['float'] / t_q:.2f}x vs float, {t_dyn / t_q:.2f}x vs dynamic int8"))
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
        t_torch = median_seconds(lambda: torch.load(pt, map_location="cpu", weights_only=True),
                                 repeat)
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
            t_deq_fast = median_seconds(lambda fast=fast, packed=packed: [
                fast.dequantize(q) for q in packed], repeat)
            t_deq_ref = median_seconds(lambda ref=ref, packed=packed: [
                ref.dequantize(q) for q in packed], max(1, repeat // 2))

            def open_lazy(path=path):
                return load_weights(path)

            def open_all(path=path):
                weights = load_weights(path)
                weights.verify()  # every checksum, on all cores
                return [weights[name] for name in weights]

            t_lazy = median_seconds(open_lazy, repeat)
            t_all = median_seconds(open_all, repeat)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="matrix side (default 4096)")
    parser.add_argument("--model-layers", type=int, default=6, help="layers of the model")
    parser.add_argument("--model-width", type=int, default=768, help="width of the model")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per row (median)")
    args = parser.parse_args()
    import aios_native

    progress = tqdm(total=4 + 2 + 3 + 2, desc="benchmarking", unit="step")
    rows = [("what", "aios", "baseline (same run)", "speed-up / ratio")]
    rows += matrix_rows(args.size, args.repeat, progress)
    rows += linear_rows(args.size, args.repeat, progress)
    rows += error_rows(args.size, progress)
    rows += model_rows(args.model_layers, args.model_width, args.repeat, progress)
    rows.append(("perplexity int8 / int4 / int4+GPTQ vs float", "waits for the text head",
                 "-", "-"))
    progress.close()
    print(f"\nnative threads: {aios_native.thread_count()}, torch threads: "
          f"{torch.get_num_threads()}, SIMD: {', '.join(aios_native.enabled_simd()) or 'none'}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(table(rows))


if __name__ == "__main__":
    main()
