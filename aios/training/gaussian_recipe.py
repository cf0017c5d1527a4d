"""Training a continuous head: the part of an image or audio recipe that is not about data.

A pack prepares its frames (patches, audio frames) and labels; this module builds the model on
the chosen backbone (the shipped text model's, frozen or trained along, or a new one), trains it
with the core's loop, scores it on held-out frames and writes the model directory. Both the
image and the audio pack train through here, so "head alone on the frozen backbone" means the
same thing for every modality.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aios.errors import AiosError
from aios.io import write_atomic
from aios.models import (
    Backbone,
    BackboneConfig,
    ContinuousDiffusionModel,
    ContinuousHead,
    GaussianDiffusionTask,
    save_continuous_model,
)
from aios.schedules import schedule_from_config
from aios.training.loop import TrainConfig, train

#: `backbone_from` value that means the backbone of the model shipped with aios-text.
TEXT_BACKBONE = "text"


@dataclass(frozen=True)
class HeadTraining:
    """How a continuous head is trained.

    - ``backbone_from``: ``text`` (the shipped aios-text model's backbone), a model directory,
      or empty for a new backbone of size ``backbone`` (small test runs).
    - ``train_backbone``: false trains the head alone on the frozen backbone (the design's way
      to add a modality); true trains both (the comparison).
    """

    backbone_from: str = TEXT_BACKBONE
    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(dim=32, depth=2, heads=2, max_len=128))
    train_backbone: bool = False
    schedule: str = "cosine"
    num_train_timesteps: int = 1000
    prediction: str = "v"
    label_dropout: float = 0.1
    batch_size: int = 64
    eval_examples: int = 512
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.prediction not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', got {self.prediction!r}")
        schedule_from_config(self.schedule, self.num_train_timesteps)  # raises when unknown
        if not self.backbone_from and not self.train_backbone:
            raise ValueError("a new backbone starts as the identity (adaLN-Zero) and must be "
                             "trained: set train_backbone: true, or give backbone_from")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"]["betas"] = list(self.train.betas)
        return data


def backbone_directory(source: str) -> Path | None:
    """The model directory `backbone_from` names (None: a new backbone)."""
    if not source:
        return None
    if source == TEXT_BACKBONE:
        return installed_model_directory(source)
    path = Path(source).expanduser()
    if not (path / "model.yaml").exists():
        raise AiosError(f"backbone_from: {source} is not a model directory (no model.yaml)")
    return path


def installed_model_directory(head: str) -> Path:
    """The default model directory of the installed head `head` (its factory's
    `default_model`), found through the registry: the core never imports a pack."""
    from aios.errors import PluginNotFoundError
    from aios.registry import default_registry

    try:
        factory = default_registry().get("head", head).factory
    except PluginNotFoundError:
        factory = None
    directory = getattr(factory, "default_model", None)
    if directory is None:
        raise AiosError(f"backbone_from: {head} needs the aios-{head} pack (pip install "
                        f"aios-{head}), or give a model directory")
    return Path(directory)


def backbone_slot(modality: str, directory: Path | None, capacity: int) -> int:
    """The backbone slot a new head of `modality` trains on: the one this modality already has
    on this backbone, else the lowest slot no head sharing the backbone uses (the heads the
    source directory records, and the installed heads whose default model ships the same
    backbone file, so one engine can hold them all on one backbone)."""
    from aios.models import content_hash, free_slot, recorded_slots
    from aios.registry import default_registry

    taken: dict[str, int] = {}
    if directory is not None:
        digest = content_hash(directory / "backbone.arrow")
        registry = default_registry()
        for name in registry.names("head"):
            installed = getattr(registry.get("head", name).factory, "default_model", None)
            backbone = Path(installed or "") / "backbone.arrow"
            if installed and backbone.is_file() and content_hash(backbone) == digest:
                taken.update(recorded_slots(installed))
        taken.update(recorded_slots(directory))
    return free_slot(modality, taken, capacity)


def build_backbone(training: HeadTraining) -> tuple[Backbone, Path | None]:
    """The backbone to train on (float weights) and the weight file it came from."""
    from aios.models import load_float_backbone

    directory = backbone_directory(training.backbone_from)
    if directory is None:
        return Backbone(training.backbone), None
    return load_float_backbone(directory), directory / "backbone.arrow"


def heldout_loss(model: ContinuousDiffusionModel, task: GaussianDiffusionTask,
                 frames: np.ndarray, labels: np.ndarray, limit: int) -> float:
    """The task's loss on held-out frames with fixed noise: comparable between runs."""
    generator = torch.Generator().manual_seed(1234)
    count = min(limit, len(frames))
    total = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, count, 128):
            stop = min(count, start + 128)
            batch = (torch.from_numpy(np.ascontiguousarray(frames[start:stop], np.float32)),
                     torch.from_numpy(np.asarray(labels[start:stop], np.int64)))
            total += float(task.loss(model, batch, generator)) * (stop - start)
    return total / count


def train_continuous_head(
    name: str,
    modality: int | None,
    training: HeadTraining,
    data: tuple[np.ndarray, np.ndarray],
    heldout: tuple[np.ndarray, np.ndarray],
    settings: dict[str, Any],
    out: Path,
    *,
    progress: bool = True,
) -> tuple[ContinuousDiffusionModel, dict[str, Any]]:
    """Train head `name` on `data` (frames, labels), write `out/model`, return the model and
    its metrics. `modality` is the backbone slot; None picks it (`backbone_slot`) and the model
    directory records it. `settings` (the codec's and the class names) go into `model.yaml`."""
    frames, labels = data
    classes = settings["classes"]
    torch.manual_seed(training.train.seed)
    backbone, backbone_file = build_backbone(training)
    if modality is None:
        modality = backbone_slot(name, backbone_directory(training.backbone_from),
                                 backbone.config.modalities)
    head = ContinuousHead(frames.shape[2], frames.shape[1], backbone.config.dim, len(classes))
    model = ContinuousDiffusionModel(backbone, head, modality)
    schedule = schedule_from_config(training.schedule, training.num_train_timesteps)
    task = GaussianDiffusionTask(name, frames, labels, schedule, num_classes=len(classes),
                                 prediction=training.prediction,
                                 batch_size=training.batch_size,
                                 label_dropout=training.label_dropout)
    trainable = None if training.train_backbone else (lambda n: n.startswith("head."))
    started = time.perf_counter()
    result = train(model, [task], training.train, out / "train", trainable=trainable,
                   progress=progress)
    if result.ema is not None:
        model.load_state_dict(result.ema, strict=False)
    seconds = time.perf_counter() - started
    entry = {**settings, "schedule": training.schedule,
             "num_train_timesteps": training.num_train_timesteps,
             "prediction": training.prediction,
             "backbone_frozen": not training.train_backbone,
             "backbone_from": training.backbone_from or "new"}
    frozen_file = backbone_file if not training.train_backbone else None
    save_continuous_model(out / "model", model, name, entry, backbone_file=frozen_file)
    write_atomic(out / "model" / "loss.png", lambda f: f.write(result.loss_curve.read_bytes()))
    head_count = sum(p.numel() for p in head.parameters())
    backbone_count = backbone.num_parameters()
    metrics = {
        "heldout_loss": heldout_loss(model, task, heldout[0], heldout[1],
                                     training.eval_examples),
        "final_train_loss": result.losses[-1][2] if result.losses else None,
        "head_parameters": head_count,
        "backbone_parameters": backbone_count,
        "backbone_share": backbone_count / (backbone_count + head_count),
        "backbone_trained": training.train_backbone,
        "steps": training.train.steps,
        "examples_seen": training.train.steps * training.batch_size,
        "seconds_this_run": round(seconds, 1),
        "model_dir": str(out / "model"),
    }
    return model, metrics


def sample_sheet(head: Any, columns: int, steps: int,
                 guidance: float) -> tuple[Any, list[str]] | None:
    """`columns` samples of every class of `head` (rows in class order) with the best
    installed continuous sampler, seeded; None when no continuous sampler is installed."""
    from aios.protocols import GenerationRequest
    from aios.registry import default_registry

    sampler = default_registry().best("sampler", family="continuous")
    if sampler is None:
        return None
    rows = head.grid_rows("all")
    prompts = [name for name in rows for _ in range(columns)]
    request = GenerationRequest(prompts, head.modality, steps, guidance, seed=0)
    rng = np.random.default_rng(0)
    state = sampler.factory().sample(lambda x, t: head.denoise(x, t, request),
                                     head.initial_state(request, rng), num_steps=steps, rng=rng)
    return head.decode(state, request), rows


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    text = json.dumps(metrics, indent=2) + "\n"
    write_atomic(out / "metrics.json", lambda f: f.write(text.encode()))
