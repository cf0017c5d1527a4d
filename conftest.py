"""Test-wide settings for every test directory (core, packs, native)."""

import torch

# The tests use tiny models, for which threads only add overhead, and on a busy 2-core machine
# oversubscribed OpenMP threads spin: one thread makes the suite several times faster.
torch.set_num_threads(1)
