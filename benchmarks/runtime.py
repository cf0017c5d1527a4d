"""Runtimes side by side: forward time of a SmolLM2-135M-sized network (numpy vs torch), the
masked sampler's cost per step (host NumPy vs device-resident torch) as a share of a forward,
and, when CUDA is present, block decoding of the LLaDA-8B architecture with and without caches.

    python benchmarks/runtime.py [--repeats N] [--positions 32,128,512] [--batches 1,8]
                                 [--skip-forward] [--skip-sampler] [--gpu-only]
                                 [--compile-only] [--skip-compile]

Forward (CPU): the same shapes as SmolLM2-135M (dim 576, 30 layers, 9 heads of 64, 3 key/value
heads, SwiGLU 1536, vocabulary 49,152, logits included), random weights, float32 unless said:
- ``numpy``: the numpy runtime (`aios.backbone_numpy.ArrayBackbone`, the network the shipped
  models run in; multi-head attention, so its attention has 3x the key/value work);
- ``torch aios``: the aios torch backbone of the same shape;
- ``torch llama``: `transformers`' Llama (the pretrained-family path), float32 and bfloat16.
Each torch implementation runs in two worker processes, one with ``OMP_WAIT_POLICY=PASSIVE``
(threads sleep between parallel regions instead of spinning) and one without; workers are
asked in turn, so every configuration sees the same machine load (interleaved repeats).
Cells: median milliseconds, and the spread (max - min) / median in percent.

Sampler: one low-confidence step (`aios_samplers`) with every position masked (the costliest
step: normalise, draw and rank every position; beside it one `block-threshold` step, which
draws only in its current block of 32), batch 1, at vocabulary 49,152 (SmolLM2) and
126,464 (LLaDA) and length 256 and 1,024, on float32 logits: host NumPy vs torch tensors (on
the CPU here: the same code that runs on a GPU), as a share of the torch llama forward of the
SmolLM2-sized network at batch 1 and that length (the smaller the forward, the larger the
share: for LLaDA-8B the share is ~60x smaller). Goal: <= 5%.

Compile (`runtime.compile`): small networks (dim 256, 6 layers, 4 heads; vocabulary 8,192)
that the torch runtime runs (the aios backbone, the MDLM DiT, `transformers`' Llama with
bidirectional attention), batch 1 at 32 and 128 positions, eager vs compiled in place by
`aios.runtime.compiling.compile_network` (dynamic shapes), interleaved; ratios of the medians
and of the best rounds (on a loaded machine the best round is the steadier estimate). The
first call of each length (compiling, or a recompile) is reported apart, in seconds; inductor
caches compiled code on disk, so set ``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1`` for a cold
compile. ``--threads N`` sets torch's threads for this table.

GPU (only when CUDA is available; at most a few minutes): the LLaDA-8B architecture (dim 4096,
32 layers, 32 heads, SwiGLU 12288, vocabulary 126,464) with random weights in bfloat16, a
64-token prompt, 256 new tokens in blocks of 32: tokens per second with no cache, the prefix
cache and the dual cache, one token per step and with a confidence threshold.

The load average is printed first; above 0.5 the figures are not to be trusted as absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_line, table

SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
           "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 2048,
           "tie_word_embeddings": True, "hidden_act": "silu"}
#: Where the GPU part runs (a module constant so the script's GPU path can be dry-run on a CPU).
GPU_DEVICE = "cuda"
NEW_TOKENS, BLOCK = 256, 32
LLADA_8B = {"d_model": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32,
            "mlp_hidden_size": 12288, "vocab_size": 126464, "embedding_size": 126464,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_sequence_length": 4096,
            "mask_token_id": 126336, "model_type": "llada"}


# -- workers: one process per implementation and OpenMP policy --------------------------------


class Worker:
    """A child process that builds networks once and times forwards on request."""

    def __init__(self, kind: str, passive: bool) -> None:
        env = dict(os.environ)
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        else:
            env.pop("OMP_WAIT_POLICY", None)
        self.label = kind + (" PASSIVE" if passive else "")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", kind], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, request: dict[str, Any]) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["seconds"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def worker_main(kind: str) -> None:
    import numpy as np

    nets: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        request = json.loads(line)
        batch, positions = request["batch"], request["positions"]
        if kind not in nets:
            nets[kind] = build(kind)
        run = nets[kind]
        tokens = rng.integers(0, SMOLLM2["vocab_size"], (batch, positions))
        began = time.perf_counter()
        run(tokens)
        print(json.dumps({"seconds": time.perf_counter() - began}), flush=True)


def build(kind: str) -> Any:
    """A callable running one forward (embedding to logits) of the SmolLM2-sized network."""
    import numpy as np

    d, vocab = SMOLLM2["hidden_size"], SMOLLM2["vocab_size"]
    if kind == "numpy":
        from aios.models.backbone_config import BackboneConfig
        from aios.models.backbone_numpy import ArrayBackbone, _expected_names

        config = BackboneConfig(dim=d, depth=SMOLLM2["num_hidden_layers"],
                                heads=SMOLLM2["num_attention_heads"],
                                ffn_dim=SMOLLM2["intermediate_size"], max_len=2048)
        rng = np.random.default_rng(0)
        shapes = _backbone_shapes(config)
        weights = {n: (0.02 * rng.standard_normal(shapes[n])).astype(np.float32)
                   for n in _expected_names(config)}
        net = ArrayBackbone(config, weights)
        embed = (0.02 * rng.standard_normal((vocab, d))).astype(np.float32)

        def run_numpy(tokens: Any) -> Any:
            h = net(embed[tokens], np.zeros(len(tokens), np.float32), 0)
            return h @ embed.T
        return run_numpy
    import torch

    torch.manual_seed(0)
    if kind == "torch-aios":
        from aios.models.backbone import Backbone, BackboneConfig

        config = BackboneConfig(dim=d, depth=SMOLLM2["num_hidden_layers"],
                                heads=SMOLLM2["num_attention_heads"],
                                ffn_dim=SMOLLM2["intermediate_size"], max_len=2048)
        net = Backbone(config).eval()
        embed = torch.nn.Embedding(vocab, d)

        @torch.inference_mode()
        def run_aios(tokens: Any) -> Any:
            ids = torch.from_numpy(tokens)
            h = net(embed(ids), torch.zeros(len(ids)), 0)
            return h @ embed.weight.T
        return run_aios
    dtype = torch.bfloat16 if kind.endswith("bf16") else torch.float32
    model = llama_model(dtype)

    @torch.inference_mode()
    def run_llama(tokens: Any) -> Any:
        return model(torch.from_numpy(tokens), attention="bidirectional")
    return run_llama


def llama_model(dtype: Any, device: str = "cpu") -> Any:
    """The SmolLM2-sized Llama as an aios pretrained model with random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from aios.models.families import FAMILIES, PretrainedModel

    config = AutoConfig.for_model("llama", **SMOLLM2)
    network = AutoModelForCausalLM.from_config(config, dtype=dtype,
                                               attn_implementation="sdpa").to(device).eval()
    torch.manual_seed(0)
    return PretrainedModel(network, FAMILIES["llama"])


def _backbone_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    from aios.models.backbone import Backbone

    with __import__("torch").device("meta"):
        net = Backbone(config)
    return {n: tuple(t.shape) for n, t in net.state_dict().items()}


# -- tables -----------------------------------------------------------------------------------


def cell(times: list[float]) -> str:
    median = statistics.median(times)
    spread = (max(times) - min(times)) / median * 100 if median else 0.0
    return f"{median * 1000:8.1f} ±{spread:3.0f}%"


#: Sequence lengths of the sampler table (the issue's 256 and 1,024); the forward table adds
#: batch-1 columns at these lengths so that the sampler's share of a forward is measured.
SAMPLER_LENGTHS = (256, 1024)


def forward_table(args: argparse.Namespace) -> dict[tuple[str, int, int], list[float]]:
    kinds = [("numpy", False), ("torch-aios", False), ("torch-aios", True),
             ("torch-llama", False), ("torch-llama", True), ("torch-llama-bf16", True)]
    workers = [Worker(kind, passive) for kind, passive in kinds]
    shapes = [(b, n) for n in args.positions for b in args.batches]
    if not args.skip_sampler:  # the sampler's share needs the forward at its lengths
        shapes += [(1, n) for n in SAMPLER_LENGTHS if (1, n) not in shapes]
    times: dict[tuple[str, int, int], list[float]] = {}
    try:
        for w in workers:  # warm up: build the network, first-call overheads
            w.ask({"batch": 1, "positions": 16})
        for _ in range(args.repeats):
            for batch, positions in shapes:
                for w in workers:
                    t = w.ask({"batch": batch, "positions": positions})
                    times.setdefault((w.label, batch, positions), []).append(t)
    finally:
        for w in workers:
            w.close()
    rows = [["implementation"] + [f"b{b} x {n}" for b, n in shapes]]
    for w in workers:
        rows.append([w.label] + [cell(times[(w.label, b, n)]) for b, n in shapes])
    print(f"\nForward of a SmolLM2-135M-sized network, ms (median ±spread, {args.repeats} "
          "interleaved repeats)")
    print(table(rows))
    return times


def sampler_table(args: argparse.Namespace,
                  forward: dict[tuple[str, int, int], list[float]]) -> None:
    import numpy as np
    import torch
    from aios_samplers.plugin import SAMPLERS

    from aios.protocols import MaskedState

    rows = [["vocab", "length", "host numpy ms", "torch ms", "forward ms",
             "numpy share", "torch share", "block-threshold numpy / torch ms"]]
    for vocab in (49152, 126464):
        for length in SAMPLER_LENGTHS:
            rng = np.random.default_rng(0)
            logits = rng.standard_normal((1, length, vocab), dtype=np.float32)
            tensor = torch.from_numpy(logits)
            state = MaskedState(np.full((1, length), vocab - 1), mask_id=vocab - 1)
            results = {}
            for label, value in (("numpy", logits), ("torch", tensor)):
                for name in ("low-confidence", "block-threshold"):
                    sampler = SAMPLERS[name][0]()
                    sampler.set_timesteps(16 if name == "low-confidence" else length)
                    times = []
                    for _ in range(args.repeats):
                        began = time.perf_counter()
                        sampler.step(value, 0, state, np.random.default_rng(1))
                        times.append(time.perf_counter() - began)
                    results[label if name == "low-confidence" else f"{label} block"] = (
                        statistics.median(times))
            key = ("torch-llama PASSIVE", 1, length)
            fwd = statistics.median(forward[key]) if key in forward else float("nan")
            rows.append([f"{vocab:,}", str(length), f"{results['numpy'] * 1000:.1f}",
                         f"{results['torch'] * 1000:.1f}", f"{fwd * 1000:.0f}",
                         f"{results['numpy'] / fwd:.1%}", f"{results['torch'] / fwd:.1%}",
                         f"{results['numpy block'] * 1000:.1f} / "
                         f"{results['torch block'] * 1000:.1f}"])
    print("\nOne low-confidence step, every position masked, batch 1, float32 logits "
          "(share = of the torch llama forward at batch 1 and that length); last column: "
          "one block-threshold step (its current block of 32 positions) on the same logits")
    print(table(rows))


SMALL = {"dim": 256, "layers": 6, "heads": 4, "vocab": 8192}
COMPILE_CASES = ("aios backbone", "mdlm dit", "llama (transformers)")


def compile_case(kind: str) -> tuple[Any, Any]:
    """A small network of `kind` and ``run(network, tokens)``, one forward under inference."""
    import torch

    torch.manual_seed(0)
    d, layers, heads, vocab = SMALL["dim"], SMALL["layers"], SMALL["heads"], SMALL["vocab"]
    if kind == "aios backbone":
        from aios.models.backbone import Backbone, BackboneConfig

        net = Backbone(BackboneConfig(dim=d, depth=layers, heads=heads)).eval()
        embed = torch.nn.Embedding(vocab, d)

        def run_backbone(network: Any, tokens: Any) -> Any:
            return network(embed(tokens), torch.zeros(len(tokens)), 0)
        return net, run_backbone
    if kind == "mdlm dit":
        from aios.models.families.mdlm import MDLMConfig, MDLMNetwork

        net = MDLMNetwork(MDLMConfig(vocab_size=vocab, hidden_dim=d, cond_dim=128,
                                     n_blocks=layers, n_heads=heads)).eval()
        for name, parameter in net.named_parameters():  # LayerNorm weights stay 1
            if not name.endswith(("norm1.weight", "norm2.weight", "norm_final.weight")):
                torch.nn.init.normal_(parameter, std=0.02)
        return net, lambda network, tokens: network(tokens).logits
    from transformers import AutoConfig, AutoModelForCausalLM

    from aios.models.families.masks import attention_mask

    config = AutoConfig.for_model("llama", hidden_size=d, intermediate_size=4 * d,
                                  num_hidden_layers=layers, num_attention_heads=heads,
                                  num_key_value_heads=heads, vocab_size=vocab)
    net = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()

    def run_llama(network: Any, tokens: Any) -> Any:
        mask = attention_mask("bidirectional", tokens.shape[1], batch=len(tokens))
        return network(input_ids=tokens, attention_mask=mask).logits
    return net, run_llama


def compile_table(args: argparse.Namespace) -> None:
    import copy

    import torch
    from measure import interleaved

    from aios.runtime.compiling import compile_network

    positions = (32, 128)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [["network", "positions", "eager ms", "compiled ms", "compiled / eager (median)",
             "(best)", "first compiled call s"]]
    for kind in COMPILE_CASES:
        net, run = compile_case(kind)
        compiled = compile_network(copy.deepcopy(net))
        tokens = {n: torch.randint(0, SMALL["vocab"], (1, n)) for n in positions}
        first = {}
        with torch.inference_mode():
            for n in positions:  # compiling (dynamic shapes: the second length should reuse it)
                began = time.perf_counter()
                run(compiled, tokens[n])
                first[n] = time.perf_counter() - began
            for n in positions:
                ids = tokens[n]
                timings = interleaved({"eager": partial(run, net, ids),
                                       "compiled": partial(run, compiled, ids)},
                                      rounds=args.repeats)
                eager, fast = timings["eager"], timings["compiled"]
                rows.append([kind, str(n), eager.cell(digits=1), fast.cell(digits=1),
                             f"{fast.median / eager.median:.2f}",
                             f"{fast.best / eager.best:.2f}", f"{first[n]:.1f}"])
        print(f"  ({kind} done)", file=sys.stderr, flush=True)
    print(f"\ntorch.compile (runtime.compile: true) vs eager, batch 1, float32, "
          f"{torch.get_num_threads()} threads; ms = median [interquartile range] of "
          f"{args.repeats} interleaved rounds")
    print(table(rows))


def gpu_table(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        print("\nGPU: skipped (no CUDA device)")
        return
    from transformers import AutoModelForCausalLM

    from aios.models.families import FAMILIES, PretrainedModel
    from aios.models.families.pretrained import build_config
    from aios.runtime.block_decoding import decode_blocks

    spec = FAMILIES["llada"]
    config = build_config(spec, LLADA_8B, None, source="LLaDA-8B architecture")
    torch.manual_seed(0)
    with torch.device(GPU_DEVICE):
        network = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                   attn_implementation="sdpa").eval()
    model = PretrainedModel(network, spec, mask_token_id=LLADA_8B["mask_token_id"])
    prompt = [list(range(1000, 1064))]
    rows = [["cache", "decoding", "forward calls", "seconds", "tokens/s", "speed-up"]]
    base = None
    for cache in ("none", "prefix", "dual"):
        for threshold in (None, 0.9):
            decode_blocks(model, prompt, new_tokens=BLOCK, block_size=BLOCK, cache=cache)  # warm
            torch.cuda.synchronize()
            began = time.perf_counter()
            _, stats = decode_blocks(model, prompt, new_tokens=NEW_TOKENS, block_size=BLOCK,
                                     cache=cache, steps_per_block=BLOCK, threshold=threshold)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - began
            rate = NEW_TOKENS / seconds
            base = base or rate
            rows.append([cache, "1 token/step" if threshold is None else f"threshold {threshold}",
                         str(stats.forward_calls), f"{seconds:.2f}", f"{rate:.1f}",
                         f"{rate / base:.2f}x"])
    print(f"\nLLaDA-8B architecture, random weights, bfloat16, {torch.cuda.get_device_name()}: "
          f"64-token prompt, {NEW_TOKENS} new tokens, blocks of {BLOCK}")
    print(table(rows))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--positions", default="32,128,512")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--skip-sampler", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--compile-only", action="store_true",
                        help="only the eager vs torch.compile table")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the compile table (0: torch's default)")
    args = parser.parse_args()
    args.positions = [int(p) for p in args.positions.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    print(load_line())
    if args.compile_only:
        compile_table(args)
        print(load_line())
        return
    forward: dict[tuple[str, int, int], list[float]] = {}
    if not args.gpu_only:
        if not args.skip_forward:
            forward = forward_table(args)
        if not args.skip_sampler:
            sampler_table(args, forward)
        if not args.skip_compile:
            compile_table(args)
    gpu_table(args)
    print(load_line())


if __name__ == "__main__":
    main()
