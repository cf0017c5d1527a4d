"""The continuous head machinery: network, training task, model directories, NumPy twin."""

import numpy as np
import pytest
import torch

from aios.errors import AiosError
from aios.models.backbone import Backbone, BackboneConfig
from aios.models.gaussian import (
    ContinuousDiffusionModel,
    ContinuousHead,
    GaussianDiffusionTask,
    load_continuous_model,
    save_continuous_model,
)
from aios.models.gaussian_numpy import load_array_continuous_model
from aios.models.model_dir import save_model_dir
from aios.schedules import NoiseSchedule
from aios.training.loop import TrainConfig, train

SETTINGS = {"classes": ["a", "b", "c"], "schedule": "cosine", "num_train_timesteps": 100,
            "prediction": "v"}


def small_model(seed: int = 0) -> ContinuousDiffusionModel:
    torch.manual_seed(seed)
    backbone = Backbone(BackboneConfig(dim=32, depth=2, heads=4, max_len=16))
    model = ContinuousDiffusionModel(backbone, ContinuousHead(6, 5, 32, 3), modality=1).eval()
    with torch.no_grad():  # the zero-initialised parts random too, so agreement means something
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return model


def task(prediction: str = "v", dropout: float = 0.1) -> GaussianDiffusionTask:
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, (40, 5, 6)).astype(np.float32)
    return GaussianDiffusionTask("toy", data, rng.integers(0, 3, 40), NoiseSchedule.cosine(100),
                                 num_classes=3, prediction=prediction, batch_size=8,
                                 label_dropout=dropout)


def test_the_model_predicts_one_value_per_frame_value():
    model = small_model()
    out = model(torch.randn(2, 5, 6), torch.rand(2), torch.tensor([0, 3]))
    assert out.shape == (2, 5, 6)


def test_the_null_label_is_one_past_the_classes():
    assert ContinuousHead(6, 5, 32, 3).null_label == 3
    assert ContinuousHead(6, 5, 32, 3).label.num_embeddings == 4


def test_frames_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match=r"frames must be \(batch, positions, 6\)"):
        small_model()(torch.randn(2, 5, 7), torch.rand(2), torch.tensor([0, 1]))


def test_a_modality_outside_the_backbone_is_refused():
    backbone = Backbone(BackboneConfig(dim=32, depth=1, heads=4, modalities=2))
    with pytest.raises(ValueError, match="modality id 3"):
        ContinuousDiffusionModel(backbone, ContinuousHead(6, 5, 32, 3), modality=3)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_a_fresh_head_predicts_zero_so_the_loss_is_the_targets_variance(prediction):
    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig(dim=32, depth=1, heads=4, max_len=16))
    model = ContinuousDiffusionModel(backbone, ContinuousHead(6, 5, 32, 3), modality=1)
    t = task(prediction)
    loss = t.loss(model, t.batch(np.random.default_rng(1)), torch.Generator().manual_seed(0))
    # epsilon and v both have unit variance per element (alpha^2 + sigma^2 = 1, |x0| <= 1)
    assert 0.3 < float(loss.detach()) < 1.5


def test_label_dropout_replaces_a_share_of_labels_by_the_null_label():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, frames, t, labels):
            seen.append(labels)
            return torch.zeros_like(frames)

    t = task(dropout=0.5)
    for seed in range(20):
        t.loss(Spy(), t.batch(np.random.default_rng(seed)), torch.Generator().manual_seed(seed))
    labels = torch.cat(seen)
    assert 0.3 < float((labels == 3).float().mean()) < 0.7


def test_bad_task_inputs_name_the_problem():
    with pytest.raises(ValueError, match="'epsilon' or 'v'"):
        task(prediction="x0")
    with pytest.raises(ValueError, match="one label per example"):
        GaussianDiffusionTask("t", np.zeros((4, 2, 3)), np.zeros(3), NoiseSchedule.cosine(10),
                              num_classes=2)


def test_training_the_head_alone_leaves_the_backbone_bit_exact(tmp_path):
    model = small_model()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.embed_in[0].weight.clone()
    train(model, [task()], TrainConfig(steps=3, warmup=1, ema_decay=None), tmp_path,
          trainable=lambda n: n.startswith("head."), progress=False)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not torch.equal(model.head.embed_in[0].weight, head_before)


def test_the_numpy_twin_computes_what_the_torch_model_computes(tmp_path):
    model = small_model()
    save_continuous_model(tmp_path, model, "toy", SETTINGS)
    arrays, settings = load_array_continuous_model(tmp_path, "toy")
    x, t, labels = torch.randn(3, 5, 6), torch.rand(3), torch.tensor([0, 2, 3])
    with torch.no_grad():
        expected = model(x, t, labels).numpy()
    np.testing.assert_allclose(arrays(x.numpy(), t.numpy(), labels.numpy()), expected,
                               atol=1e-4)
    assert settings["features"] == 6 and settings["positions"] == 5
    assert settings["modality_id"] == 1 and settings["classes"] == ["a", "b", "c"]


def test_a_saved_model_loads_back_into_torch_with_the_same_outputs(tmp_path):
    model = small_model()
    save_continuous_model(tmp_path, model, "toy", SETTINGS)
    loaded, _ = load_continuous_model(tmp_path, "toy")
    x, t, labels = torch.randn(2, 5, 6), torch.rand(2), torch.tensor([1, 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, labels), model(x, t, labels))


def test_a_frozen_backbone_file_is_copied_byte_for_byte(tmp_path):
    model = small_model()
    save_model_dir(tmp_path / "source", model.backbone, {})
    source = tmp_path / "source" / "backbone.arrow"
    save_continuous_model(tmp_path / "head", model, "toy", SETTINGS, backbone_file=source)
    assert (tmp_path / "head" / "backbone.arrow").read_bytes() == source.read_bytes()


def test_a_directory_without_the_head_says_how_to_train_it(tmp_path):
    save_continuous_model(tmp_path, small_model(), "toy", SETTINGS)
    with pytest.raises(AiosError, match="aios train other"):
        load_array_continuous_model(tmp_path, "other")
