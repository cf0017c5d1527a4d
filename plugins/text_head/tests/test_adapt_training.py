"""Training the adaptation: data-parallel processes take the one-process step, and a
resumed run takes exactly the steps of one that never stopped."""

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("adapt_ddp_worker.py")


def _run(out: Path, steps: int, processes: int = 1) -> dict:
    if processes == 1:
        command = [sys.executable, str(WORKER), str(out), str(steps)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={processes}", str(WORKER), str(out), str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out / "adaptation.pt", weights_only=True)


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def test_two_processes_take_the_one_process_steps(tmp_path):
    one = _run(tmp_path / "one", steps=3)
    two = _run(tmp_path / "two", steps=3, processes=2)
    _assert_same(one, two, atol=1e-5)
    assert not torch.equal(one["mask_embedding"], _run(tmp_path / "short", steps=1)[
        "mask_embedding"])  # the steps did move the weights


def test_resumed_training_takes_the_same_steps(tmp_path):
    straight = _run(tmp_path / "straight", steps=4)
    _run(tmp_path / "resumed", steps=2)
    resumed = _run(tmp_path / "resumed", steps=4)  # continues from the step-2 checkpoint
    _assert_same(straight, resumed, atol=0)
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    # only what trains is checkpointed: no frozen base weight
    assert all("lora_" in n or n == "mask_embedding" for n in checkpoint["model"])
