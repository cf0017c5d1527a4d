"""The image head through the engine and the command line, on the tiny digits model."""

import image_fixtures
import numpy as np
import pytest
from aios_image.head import ImageHead
from matplotlib import image as mpimg

from aios.cli import app as cli
from aios.engine import ArrowEngine
from aios.errors import AiosError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return image_fixtures.trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model_dir(tiny_run):
    return str(tiny_run[0] / "model")


def engine(model_dir, sampler="ddim"):
    return ArrowEngine.from_config(overrides=[f"head.model={model_dir}",
                                              f"sampler.name={sampler}",
                                              "generate.modality=image"])


def test_auto_picks_the_image_head_for_the_image_modality(model_dir):
    assert isinstance(engine(model_dir).head, ImageHead)


def test_diffuse_returns_one_uint8_image_of_the_trained_size(model_dir):
    image = engine(model_dir).diffuse("seven", modality="image", num_steps=3, seed=0)
    assert image.shape == (8, 8) and image.dtype == np.uint8


def test_a_list_of_prompts_returns_a_batch(model_dir):
    images = engine(model_dir).diffuse(["one", "2", "three"], num_steps=2, seed=0)
    assert images.shape == (3, 8, 8)


def test_a_seed_reproduces_the_image(model_dir):
    built = engine(model_dir)
    first = built.diffuse("seven", num_steps=3, seed=5)
    np.testing.assert_array_equal(first, built.diffuse("seven", num_steps=3, seed=5))
    assert not np.array_equal(first, built.diffuse("seven", num_steps=3, seed=6))


def test_the_guidance_scale_reaches_the_sampler(model_dir):
    built = engine(model_dir)
    final = {}

    def keep(scale):
        return lambda step, steps, state: final.__setitem__(scale, state.x.copy())

    for scale in (1.0, 4.0):
        built.diffuse("seven", num_steps=3, seed=1, guidance_scale=scale, callback=keep(scale))
    assert np.abs(final[1.0] - final[4.0]).max() > 1e-6


@pytest.mark.parametrize("sampler", ["ddpm", "dpm-solver++", "euler-ancestral", "heun", "unipc"])
def test_every_continuous_sampler_runs_the_head(model_dir, sampler):
    image = engine(model_dir, sampler).diffuse("four", num_steps=3, seed=0, guidance_scale=2.0)
    assert image.shape == (8, 8)


def test_an_unknown_class_names_the_known_ones(model_dir):
    with pytest.raises(AiosError, match="prompt one of: zero/0"):
        engine(model_dir).diffuse("sneaker", num_steps=2)


def test_generate_writes_a_png_of_the_image(model_dir, tmp_path, capsys):
    out = tmp_path / "seven.png"
    code = cli.main(["--set", f"head.model={model_dir}", "generate", "--modality", "image",
                     "seven", "--steps", "2", "--seed", "0", "--out", str(out)])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    assert mpimg.imread(out).shape[:2] == (64, 64)  # upscaled 8x for viewing


def test_the_png_is_the_image_upscaled_by_nearest_neighbour_or_raw_on_request(model_dir,
                                                                              tmp_path):
    def grey(path):
        return np.round(mpimg.imread(path)[..., 0] * 255).astype(np.int64)

    built = engine(model_dir)
    image = built.diffuse("seven", num_steps=2, seed=1)
    built.head.write(image, tmp_path / "big.png")
    ImageHead(str(model_dir), view_scale=1).write(image, tmp_path / "raw.png")
    raw, big = grey(tmp_path / "raw.png"), grey(tmp_path / "big.png")
    assert raw.shape == (8, 8) and big.shape == (64, 64)
    np.testing.assert_allclose(raw, image, atol=1)  # matplotlib's grey map rounds
    np.testing.assert_array_equal(big, np.kron(raw, np.ones((8, 8), np.int64)))


def test_generate_grid_writes_one_labelled_row_per_class(model_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = cli.main(["--set", f"head.model={model_dir}", "generate", "--modality", "image",
                     "one, two", "--grid", "--steps", "2", "--out", str(out)])
    assert code == 0
    height, width = mpimg.imread(out).shape[:2]
    assert width > height  # two rows of eight


def test_generate_with_an_unknown_class_exits_1(model_dir, tmp_path, capsys):
    code = cli.main(["--set", f"head.model={model_dir}", "generate", "--modality", "image",
                     "sneaker", "--steps", "2", "--out", str(tmp_path / "x.png")])
    assert code == 2 and "prompt one of" in capsys.readouterr().err


def test_the_torch_runtime_draws_the_numpy_runtimes_image(model_dir):
    """`runtime.name: torch` runs the network in torch (here on the CPU, float32): the same
    seed gives the same image; `runtime.dtype: bfloat16` puts the weights in bfloat16."""
    import torch

    from aios.models.gaussian import RuntimeContinuousModel

    def on(*settings):
        return ArrowEngine.from_config(overrides=[f"head.model={model_dir}", "head.name=image",
                                                  "sampler.name=ddim", *settings])

    numpy_engine, torch_engine = on(), on("runtime.name=torch", "runtime.device=cpu",
                                       "runtime.dtype=float32")
    assert numpy_engine.runtimes["image"].name == "numpy"
    assert isinstance(torch_engine.head.model, RuntimeContinuousModel)
    want = numpy_engine.diffuse("seven", num_steps=4, seed=0).astype(int)
    got = torch_engine.diffuse("seven", num_steps=4, seed=0).astype(int)
    assert np.abs(got - want).max() <= 1  # float rounding may move a pixel by one level
    half = on("runtime.name=torch", "runtime.dtype=bfloat16").head.model.network
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
