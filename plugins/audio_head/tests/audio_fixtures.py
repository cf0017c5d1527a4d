"""A tiny audio model trained by the real recipe on a few rendered words, shared by the tests
(imported by the test modules; see image_fixtures.py in aios-image for why not conftest.py)."""

import shutil
from pathlib import Path

import pytest
import yaml

TINY_RECIPE = {
    "words": ["yes", "no"],
    "renders": 5,
    "n_fft": 2000,
    "hop": 1000,
    "training": {"backbone_from": "", "train_backbone": True,
                 "backbone": {"dim": 32, "depth": 1, "heads": 2, "max_len": 32},
                 "batch_size": 4, "eval_examples": 2, "num_train_timesteps": 100,
                 "train": {"steps": 6, "warmup": 1, "checkpoint_every": 3, "ema_decay": None}},
    "grid_columns": 1,
    "grid_steps": 2,
}


def write_tiny_recipe(directory: Path, **overrides) -> Path:
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **overrides}))
    return path


_RUNS: dict = {}


def trained_run(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny run's directory and metrics, trained on first use (skips without espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    if "run" not in _RUNS:
        from aios_audio.recipe import load_recipe, run_recipe

        directory = tmp_path_factory.mktemp("audio-run")
        metrics = run_recipe(load_recipe(write_tiny_recipe(directory)), directory / "run",
                             progress=False)
        _RUNS["run"] = (directory / "run", metrics)
    return _RUNS["run"]
