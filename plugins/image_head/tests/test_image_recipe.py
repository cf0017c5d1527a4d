import image_fixtures
import numpy as np
import pytest
import yaml
from aios_image.recipe import DEFAULT_RECIPE, load_recipe, run_recipe

from aios.errors import AiosError
from aios.models.gaussian_numpy import head_settings


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return image_fixtures.trained_run(tmp_path_factory)


@pytest.fixture
def write_recipe():
    return image_fixtures.write_tiny_recipe


def test_the_recipe_writes_a_model_directory_with_its_pictures(tiny_run):
    run, _ = tiny_run
    model = run / "model"
    for name in ("model.yaml", "backbone.arrow", "image.arrow", "loss.png", "samples.png"):
        assert (model / name).is_file(), name
    settings = head_settings(model, "image")
    assert settings["image_size"] == [8, 8] and settings["patch"] == 2
    assert settings["features"] == 4 and settings["positions"] == 16
    assert settings["classes"][7] == "seven/7" and settings["prediction"] == "v"


def test_training_lowers_the_loss(tiny_run):
    run, metrics = tiny_run
    losses = np.loadtxt(run / "train" / "losses.csv", delimiter=",", skiprows=1,
                        usecols=2)
    assert losses[-10:].mean() < losses[:5].mean()
    assert np.isfinite(metrics["heldout_loss"]) and metrics["steps"] == 30


def test_the_metrics_report_the_parameter_split(tiny_run):
    _, metrics = tiny_run
    assert metrics["head_parameters"] > 0 and metrics["backbone_trained"] is True
    total = metrics["head_parameters"] + metrics["backbone_parameters"]
    assert metrics["backbone_share"] == pytest.approx(metrics["backbone_parameters"] / total)


def test_a_frozen_backbone_ships_unchanged(tiny_run, tmp_path, write_recipe):
    source = tiny_run[0] / "model"
    training = {**yaml.safe_load(write_recipe(tmp_path).read_text())["training"],
                "backbone_from": str(source), "train_backbone": False}
    training["train"] = {**training["train"], "steps": 2}
    recipe = load_recipe(write_recipe(tmp_path, training=training, grid_columns=1))
    run_recipe(recipe, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model" / "backbone.arrow").read_bytes() == \
        (source / "backbone.arrow").read_bytes()


def test_a_run_directory_refuses_a_different_recipe(tiny_run, tmp_path, write_recipe):
    run, _ = tiny_run
    with pytest.raises(AiosError, match="different recipe"):
        run_recipe(load_recipe(write_recipe(tmp_path, patch=4)), run, progress=False)


def test_the_shipped_recipes_parse():
    default = load_recipe(DEFAULT_RECIPE)
    joint = load_recipe(DEFAULT_RECIPE.with_name("joint.yaml"))
    assert default.training.train_backbone is False and default.dataset == "fashion-mnist"
    assert joint.training.train_backbone is True and joint.patch == default.patch


def test_a_new_backbone_left_frozen_is_refused(tmp_path, write_recipe):
    from aios.errors import ConfigError

    training = {"backbone_from": "", "train_backbone": False}
    with pytest.raises(ConfigError, match="must be trained"):
        load_recipe(write_recipe(tmp_path, training=training))
