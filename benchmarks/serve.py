"""`aios serve` under load: batching across requests against one request at a time.

    python benchmarks/serve.py [--requests N] [--sequential N] [--max-tokens N] [--steps N]
                               [--clients N ...] [--set KEY=VALUE ...]

Starts `aios serve` in its own process on 127.0.0.1 (model load excluded), then runs a bounded
load: first N requests sent one at a time (the baseline), then 8 and 32 concurrent clients,
each sending N streamed text completions in a closed loop (the next as soon as the last ends).
Every request asks for the same work (max_tokens, steps; seeds differ).

Reports requests/s, generated tokens/s, p50/p99 latency, p50 time to the first streamed
token, the mean rows per batched model call (from /metrics) and the throughput against the
sequential baseline. Goal: at 8 clients, >= 3x the sequential throughput with p99 latency under
3x the single-request latency (the sequential p50).

Timings depend on the machine being quiet: the load average is printed first, with a warning
above 0.5; report figures with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_line, table

PROMPTS = ["Once upon a time", "And the LORD said unto", "To be, or not to be", "The secret of",
           "KING HENRY:", "Love is", "In the beginning", "A fool and his money"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, max_batch: int, overrides: list[str]) -> subprocess.Popen[bytes]:
    settings = [arg for item in overrides for arg in ("--set", item)]
    process = subprocess.Popen(
        [sys.executable, "-m", "aios.cli", *settings, "serve", "--port", str(port), "--log-level",
         "warning", "--max-batch", str(max_batch), "--max-queue", "256"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit("aios serve exited before it was ready")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("aios serve was not ready within 300 s")


async def one_request(client: httpx.AsyncClient, url: str, body: dict[str, Any]
                      ) -> tuple[float, float, int]:
    """(latency, time to the first streamed text, completion tokens) of one request."""
    started = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    latency = time.perf_counter() - started
    return latency, latency if first is None else first, tokens


async def run_load(url: str, clients: int, requests: int, max_tokens: int,
                   steps: int) -> dict[str, Any]:
    results: list[tuple[float, float, int]] = []

    async def client_loop(number: int) -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            for i in range(requests):
                body = {"model": "text", "prompt": PROMPTS[(number + i) % len(PROMPTS)],
                        "max_tokens": max_tokens, "steps": steps, "seed": number * 1000 + i,
                        "stream": True, "stream_options": {"include_usage": True}}
                results.append(await one_request(client, url, body))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    latency = np.array([r[0] for r in results])
    first = np.array([r[1] for r in results])
    tokens = sum(r[2] for r in results)
    return {"requests": len(results), "elapsed": elapsed, "rps": len(results) / elapsed,
            "tps": tokens / elapsed, "p50": float(np.percentile(latency, 50)),
            "p99": float(np.percentile(latency, 99)), "ttft": float(np.percentile(first, 50))}


def batch_rows(url: str) -> tuple[float, float]:
    """(sum, count) of the rows-per-model-call histogram of the text model."""
    text = httpx.get(f"{url}/metrics", timeout=30).text

    def value(name: str) -> float:
        found = re.search(rf'^aios_batch_rows_{name}\{{model="text"\}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    return value("sum"), value("count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4,
                        help="requests per concurrent client (default 4)")
    parser.add_argument("--sequential", type=int, default=8,
                        help="requests of the one-at-a-time baseline (default 8)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the server, e.g. head.dtype=bfloat16")
    args = parser.parse_args()

    print(load_line())
    print(f"{os.cpu_count()} CPUs; each request: {args.max_tokens} tokens, {args.steps} steps, "
          f"streamed; server settings: {' '.join(args.set) or 'the defaults'}\n")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, max(args.clients), args.set)
    try:
        asyncio.run(run_load(url, 1, 1, args.max_tokens, args.steps))  # warm up
        rows = [["clients", "requests", "req/s", "tokens/s", "p50 s", "p99 s", "TTFT p50 s",
                 "rows/call", "vs sequential"]]
        base: dict[str, Any] | None = None
        for clients, requests in [(1, args.sequential),
                                  *((c, args.requests) for c in args.clients)]:
            before = batch_rows(url)
            result = asyncio.run(run_load(url, clients, requests, args.max_tokens,
                                          args.steps))
            after = batch_rows(url)
            calls = after[1] - before[1]
            mean_rows = (after[0] - before[0]) / calls if calls else float("nan")
            base = base or result
            rows.append([f"{clients}" + (" (sequential)" if clients == 1 else ""),
                         result["requests"], f"{result['rps']:.2f}", f"{result['tps']:.0f}",
                         f"{result['p50']:.2f}", f"{result['p99']:.2f}",
                         f"{result['ttft']:.2f}", f"{mean_rows:.1f}",
                         f"{result['rps'] / base['rps']:.2f}x"])
            if clients == 8:
                speedup = result["rps"] / base["rps"]
                ratio = result["p99"] / base["p50"]
                verdict = (f"8 clients: {speedup:.2f}x the sequential throughput (goal >= 3x), "
                           f"p99 {ratio:.2f}x the single-request latency (goal < 3x)")
        print(table(rows))
        if 8 in args.clients:
            print("\n" + verdict)
        print(f"\n{load_line()}  (after)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


if __name__ == "__main__":
    main()
