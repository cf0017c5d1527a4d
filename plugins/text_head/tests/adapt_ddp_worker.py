"""Trains the tiny adapted model for a few steps; run alone or under `torchrun` by
test_adapt_training.py. argv: OUT_DIR."""

import sys
from pathlib import Path

import numpy as np
import torch
from adapt_fixtures import MASK, VOCAB, tiny_adapted  # the script's folder is on sys.path
from aios_text.adapt.objective import BlockDiffusionTask, WindowSource

from aios.training import TrainConfig, is_main_process, train


def main(out: Path, steps: int) -> None:
    torch.set_num_threads(1)
    model = tiny_adapted()
    ids = np.random.default_rng(0).integers(6, VOCAB, 5000).astype(np.int32)
    task = BlockDiffusionTask([WindowSource("random", ids, 1.0)], length=32, batch_size=4,
                              block_sizes=(4, 8), mask_token_id=MASK)
    config = TrainConfig(steps=steps, lr=1e-2, warmup=1, ema_decay=None, checkpoint_every=2)
    train(model, [task], config, out, progress=False,
          trainable=lambda n: n == "mask_embedding" or ".lora_" in n)
    if is_main_process():
        torch.save(model.adaptation_state(), out / "adaptation.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
