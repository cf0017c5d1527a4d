"""One training loop for any mixture of heads.

Every step draws its task and its batch from a random generator seeded by (seed, step), so a run
resumed from a checkpoint takes exactly the same steps as one that never stopped. The loop knows
nothing about modalities: a `TrainTask` supplies batches and computes its own loss on the model.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from aios.errors import AiosError
from aios.io import write_atomic
from aios.quant import QuantizedLinear
from aios.training.distributed import (
    average_gradients,
    barrier,
    init_distributed,
    is_main_process,
)


class TrainTask(Protocol):
    """One head's data stream and loss; `weight` is its share of the training steps."""

    name: str
    weight: float

    def batch(self, rng: np.random.Generator) -> Any:
        """A batch drawn with `rng` only (so that a step is reproducible from its seed)."""

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> Tensor:
        """The scalar loss of `model` on `batch`; draw any noise or masks from `generator`."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; AdamW with linear warm-up then cosine decay to `min_lr`."""

    steps: int = 1000
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    seed: int = 0
    checkpoint_every: int = 200


@dataclass
class TrainResult:
    steps: int
    losses: list[tuple[int, str, float]]
    checkpoint: Path
    loss_curve: Path
    ema: dict[str, Tensor] | None = field(default=None, repr=False)


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate at `step` (0-based): linear warm-up, then cosine down to `min_lr`."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of the trainable parameters (the weights that get shipped)."""

    def __init__(self, params: dict[str, Tensor], decay: float) -> None:
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, Tensor]) -> None:
        for name, p in params.items():
            self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)


def train(
    model: nn.Module,
    tasks: Sequence[TrainTask],
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    trainable: Callable[[str], bool] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on a weighted mixture of `tasks`, checkpointing into `out_dir`.

    `trainable(name)` selects the parameters to train (e.g. only a new head on a frozen
    backbone); the others keep their values exactly, and checkpoints hold only the trained
    ones (the caller rebuilds the frozen ones). With `resume`, an existing checkpoint in
    `out_dir` is continued. Under `torchrun` (``WORLD_SIZE`` > 1) each process trains on its
    shard of every batch (tasks with a ``shard`` attribute) and gradients are averaged
    (`aios.training.distributed`).
    """
    if not tasks:
        raise ValueError("train() needs at least one task")
    quantized = [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
    if quantized:
        raise AiosError(f"{len(quantized)} layers of the model are quantized ({quantized[0]}, "
                        "...) and cannot learn; load float weights, or call "
                        "aios.quant.linear.dequantize_linears(model) first")
    weights = np.array([t.weight for t in tasks], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"task weights must be non-negative with a positive sum, got {weights}")
    weights /= weights.sum()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable is None or trainable(name))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("no parameter is trainable; check the `trainable` selection")
    rank, world = init_distributed()
    for task in tasks:
        if hasattr(task, "shard"):
            task.shard = (rank, world)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    ema = EMA(params, config.ema_decay) if config.ema_decay is not None else None
    checkpoint = out / "checkpoint.pt"
    losses: list[tuple[int, str, float]] = []
    start = 0
    if resume and checkpoint.exists():
        start, losses = _load_checkpoint(checkpoint, model, optimizer, ema, config)

    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="training",
               disable=not progress, dynamic_ncols=True)
    for step in bar:
        rng = np.random.default_rng([config.seed, step])
        task = tasks[int(rng.choice(len(tasks), p=weights))]
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = task.loss(model, task.batch(rng), generator)
        if not torch.isfinite(loss):
            raise AiosError(f"the loss of task {task.name!r} became {loss.item()} at step {step}; "
                            "lower the learning rate or check the task's data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params.values(), world)
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params.values(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(params)
        losses.append((step, task.name, float(loss.detach())))
        bar.set_postfix({task.name: f"{losses[-1][2]:.4f}"}, refresh=False)
        done = step + 1
        if (done % config.checkpoint_every == 0 or done == config.steps) and is_main_process():
            _save_checkpoint(checkpoint, model, optimizer, ema, config, done, losses, params)
    bar.close()
    barrier()
    curve = out / "loss.png"
    if is_main_process():
        write_loss_curve(losses, curve)
        _write_losses_csv(losses, out / "losses.csv")
    return TrainResult(config.steps, losses, checkpoint, curve,
                       ema.shadow if ema is not None else None)


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     ema: EMA | None, config: TrainConfig, step: int,
                     losses: list[tuple[int, str, float]], params: dict[str, Tensor]) -> None:
    frozen = {id(p) for n, p in model.named_parameters() if n not in params}
    state = {
        "step": step,
        "config": asdict(config),
        # frozen parameters are rebuilt by the caller: a LoRA run of a 135M-parameter model
        # checkpoints megabytes, not the whole network
        "model": {n: t.detach() for n, t in model.state_dict(keep_vars=True).items()
                  if id(t) not in frozen},  # (tied weights appear under two names)
        "optimizer": optimizer.state_dict(),
        "ema": ema.shadow if ema is not None else None,
        "losses": losses,
    }
    write_atomic(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     ema: EMA | None, config: TrainConfig) -> tuple[int, list]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise AiosError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {first_line}); "
                        "delete it to start over") from exc
    if state["config"]["seed"] != config.seed:
        raise AiosError(f"checkpoint {path} was trained with seed {state['config']['seed']} but "
                        f"this run uses seed {config.seed}; use the same seed or a new directory")
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    frozen = {n for n, t in model.state_dict(keep_vars=True).items()
              if isinstance(t, nn.Parameter) and not t.requires_grad}
    if unexpected or set(missing) - frozen:
        raise AiosError(f"checkpoint {path} does not fit this model (missing "
                        f"{sorted(set(missing) - frozen)[:3]}, unexpected {unexpected[:3]}); "
                        "resume with the recipe that wrote it or train into a new directory")
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state["ema"] is not None:
        ema.shadow = state["ema"]
    return int(state["step"]), [tuple(x) for x in state["losses"]]


def _write_losses_csv(losses: list[tuple[int, str, float]], path: Path) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["step", "task", "loss"])
    writer.writerows(losses)
    write_atomic(path, lambda f: f.write(text.getvalue().encode()))


def write_loss_curve(losses: list[tuple[int, str, float]], path: Path) -> Path:
    """Save a PNG of each task's loss (raw and smoothed) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name in sorted({task for _, task, _ in losses}):
        steps = np.array([s for s, t, _ in losses if t == name])
        values = np.array([v for _, t, v in losses if t == name])
        ax.plot(steps, values, alpha=0.25, linewidth=0.8)
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label=name, color=ax.lines[-1].get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path

