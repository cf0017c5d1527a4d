"""The image head's training recipe: one YAML file and one command reproduce a model.

`run_recipe` reads the data set, cuts the images into patches, trains the head (alone on the
frozen text backbone by default) through `aios.training`, and writes the model directory
with a grid of samples of every class beside its loss curve.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aios.training import (
    HeadTraining,
    bind_run,
    load_recipe_file,
    sample_sheet,
    train_continuous_head,
    write_metrics,
)
from aios_image.codec import patchify
from aios_image.data import load_dataset

DEFAULT_RECIPE = Path(__file__).with_name("recipes") / "default.yaml"


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that determines a trained image head."""

    dataset: str = "fashion-mnist"
    patch: int = 7
    training: HeadTraining = field(default_factory=HeadTraining)
    grid_columns: int = 8
    grid_steps: int = 20
    grid_guidance: float = 3.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["training"] = self.training.to_dict()
        return data


def load_recipe(path: str | os.PathLike[str]) -> ImageRecipe:
    return load_recipe_file(ImageRecipe, path)


def run_recipe(recipe: ImageRecipe, out_dir: str | os.PathLike[str], *,
               progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the head of `recipe` in `out_dir`; returns its metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bind_run(out, recipe.to_dict())
    train_set, test_set = load_dataset(recipe.dataset, "train"), load_dataset(recipe.dataset,
                                                                               "test")
    height, width = train_set.images.shape[1:]
    settings = {"dataset": recipe.dataset, "image_size": [int(height), int(width)],
                "patch": recipe.patch, "classes": list(train_set.classes)}
    _, metrics = train_continuous_head(
        "image", None, recipe.training,
        (patchify(train_set.images, recipe.patch), train_set.labels),
        (patchify(test_set.images, recipe.patch), test_set.labels),
        settings, out, progress=progress)
    grid = write_sample_grid(out / "model", recipe)
    if grid is not None:
        metrics["sample_grid"] = str(grid)
    write_metrics(out, metrics)
    return metrics


def write_sample_grid(model_dir: Path, recipe: ImageRecipe) -> Path | None:
    """`samples.png`: `grid_columns` samples of every class (no continuous sampler installed:
    no grid)."""
    from aios_image.head import ImageHead

    head = ImageHead(str(model_dir))
    sheet = sample_sheet(head, recipe.grid_columns, recipe.grid_steps, recipe.grid_guidance)
    if sheet is None:
        return None
    return head.write(sheet[0], model_dir / "samples.png", rows=sheet[1])[0]


# Copy shared with aios_audio/recipe.py; tests/test_pack_copies.py checks that they agree.
def train_command(recipe: str | None, out: str, progress: bool = True) -> dict[str, Any]:
    """What `aios train image` runs: the given recipe file, or the default one."""
    return run_recipe(load_recipe(recipe or DEFAULT_RECIPE), out, progress=progress)
