"""A tiny image model trained by the real recipe on scikit-learn's digits, shared by the tests.

Test modules build their fixtures on these helpers (a `conftest.py` here would clash with the
core's under pytest's default import mode); the run is trained once however many use it.
"""

from pathlib import Path

import yaml

TINY_RECIPE = {
    "dataset": "digits",
    "patch": 2,
    "training": {"backbone_from": "", "train_backbone": True,
                 "backbone": {"dim": 32, "depth": 1, "heads": 2, "max_len": 32},
                 "batch_size": 32, "eval_examples": 64, "num_train_timesteps": 100,
                 "train": {"steps": 30, "warmup": 2, "lr": 0.003, "checkpoint_every": 15,
                           "ema_decay": None}},
    "grid_columns": 2,
    "grid_steps": 3,
}


def write_tiny_recipe(directory: Path, **overrides) -> Path:
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **overrides}))
    return path


_RUNS: dict = {}


def trained_run(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny run's directory and metrics, trained on first use."""
    if "run" not in _RUNS:
        from aios_image.recipe import load_recipe, run_recipe

        directory = tmp_path_factory.mktemp("image-run")
        metrics = run_recipe(load_recipe(write_tiny_recipe(directory)), directory / "run",
                             progress=False)
        _RUNS["run"] = (directory / "run", metrics)
    return _RUNS["run"]
