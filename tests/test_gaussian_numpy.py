"""ClassConditionalHead: prompts to labels, noise to predictions, guidance as `Guided`."""

import numpy as np
import pytest

from aios.errors import AiosError
from aios.models.gaussian import save_continuous_model
from aios.models.gaussian_numpy import ClassConditionalHead, LabelledState
from aios.protocols import GenerationRequest, Guided
from tests.test_gaussian import small_model

SETTINGS = {"classes": ["T-shirt/top", "Ankle boot/boot", "Bag"], "schedule": "cosine",
            "num_train_timesteps": 100, "prediction": "v"}


class ToyHead(ClassConditionalHead):
    modality = "toy"
    name = "toy"

    def decode(self, state, request):
        return state.x


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    save_continuous_model(directory, small_model(), "toy", SETTINGS)
    return ToyHead(directory)


def request(prompt, scale=1.0):
    return GenerationRequest(prompt, "toy", 4, scale)


def test_prompts_name_classes_by_name_or_alias_in_any_case(head):
    assert head.label("T-shirt/top") == 0
    assert head.label("t-shirt") == 0 and head.label("TOP") == 0
    assert head.label("ankle boot") == 1 and head.label("boot") == 1
    assert head.label(" bag ") == 2


def test_an_unknown_prompt_lists_the_classes(head):
    with pytest.raises(AiosError, match="prompt one of: T-shirt/top, Ankle boot/boot, Bag"):
        head.label("sneaker")


def test_the_initial_state_is_seeded_noise_with_one_label_per_prompt(head):
    a = head.initial_state(request(["bag", "top"]), np.random.default_rng(3))
    b = head.initial_state(request(["bag", "top"]), np.random.default_rng(3))
    assert isinstance(a, LabelledState) and a.x.shape == (2, 5, 6)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.labels.tolist() == [2, 0] and a.prediction == "v"


def test_without_guidance_denoise_is_the_labelled_prediction(head):
    state = head.initial_state(request("bag"), np.random.default_rng(0))
    out = head.denoise(state, 50.0, request("bag"))
    assert isinstance(out, np.ndarray) and out.shape == (1, 5, 6)


def test_guidance_returns_both_branches_and_the_scale(head):
    state = head.initial_state(request("bag", 3.0), np.random.default_rng(0))
    out = head.denoise(state, 50.0, request("bag", 3.0))
    assert isinstance(out, Guided) and out.scale == 3.0
    np.testing.assert_allclose(out.conditional, head.denoise(state, 50.0, request("bag")),
                               atol=1e-5)
    null_state = LabelledState(state.x, state.schedule, "v", labels=np.array([3]))
    np.testing.assert_allclose(out.unconditional, head.denoise(null_state, 50.0, request("x")),
                               atol=1e-5)


def test_the_time_the_model_sees_is_the_timestep_over_the_table(head):
    state = head.initial_state(request("bag"), np.random.default_rng(0))
    expected = head.model(state.x, np.array([0.25], np.float32), state.labels)
    np.testing.assert_allclose(head.denoise(state, 25.0, request("bag")), expected, atol=1e-6)


def test_grid_rows_are_every_class_or_the_named_ones(head):
    assert head.grid_rows("all") == SETTINGS["classes"]
    assert head.grid_rows("bag, boot") == ["Bag", "Ankle boot/boot"]


def test_parameter_counts_split_backbone_and_head(head):
    counts = head.parameter_counts()
    model = small_model()
    assert counts["head"] == sum(p.numel() for p in model.head.parameters())
    assert counts["backbone"] == sum(p.numel() for p in model.backbone.parameters())


def test_the_head_runs_under_a_real_continuous_sampler(head):
    from aios_samplers.continuous import DDIM

    rng = np.random.default_rng(0)
    req = request(["bag", "top"], 2.0)
    state = DDIM().sample(lambda x, t: head.denoise(x, t, req), head.initial_state(req, rng),
                          num_steps=3, rng=rng)
    assert state.x.shape == (2, 5, 6) and np.isfinite(state.x).all()
    assert state.labels.tolist() == [2, 0]
