"""Training: the loop (AdamW, warm-up, EMA, checkpoints), recipe files, the Gaussian heads' recipe,
classifier scoring and figures. Everything here needs torch; it loads on first use.
"""

from aios._lazy import lazy_face

_EXPORTS = {
    "loop": (
        "EMA",
        "TrainConfig",
        "TrainResult",
        "TrainTask",
        "learning_rate",
        "train",
        "write_loss_curve",
    ),
    "gaussian_recipe": (
        "HeadTraining",
        "sample_sheet",
        "train_continuous_head",
        "write_metrics",
    ),
    "recipe_files": (
        "bind_run",
        "load_recipe_file",
        "read_recipe_data",
    ),
    "scoring": ("train_classifier",),
    "distributed": ("init_distributed", "is_main_process"),
    "figures": ("write_grid_png",),
}

__all__ = [
    "EMA",
    "HeadTraining",
    "TrainConfig",
    "TrainResult",
    "TrainTask",
    "bind_run",
    "init_distributed",
    "is_main_process",
    "learning_rate",
    "load_recipe_file",
    "read_recipe_data",
    "sample_sheet",
    "train",
    "train_classifier",
    "train_continuous_head",
    "write_grid_png",
    "write_loss_curve",
    "write_metrics",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
