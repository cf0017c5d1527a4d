import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from aios.errors import AiosError
from aios.training.loop import EMA, TrainConfig, learning_rate, train


class Regression:
    """Learn y = x @ W_true for one part of the model: a task with a known optimum."""

    def __init__(self, name, part, weight=1.0, seed=0, scale=1.0):
        self.name, self.part, self.weight, self.scale = name, part, weight, scale
        self.w = torch.from_numpy(np.random.default_rng(seed).normal(size=(4, 4))).float()

    def batch(self, rng):
        x = torch.from_numpy(rng.normal(size=(16, 4))).float()
        return x, x @ self.w

    def loss(self, model, batch, generator):
        x, y = batch
        noise = 0.01 * torch.randn(y.shape, generator=generator)
        return self.scale * (getattr(model, self.part)(x) - (y + noise)).square().mean()


def toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})


def config(**overrides):
    return TrainConfig(**{"steps": 200, "lr": 0.05, "min_lr": 0.001, "warmup": 10,
                          "weight_decay": 0.0, "checkpoint_every": 50, **overrides})


def test_training_reaches_the_known_optimum(tmp_path):
    model = toy_model()
    task = Regression("a", "a")

    def held_out_loss():
        with torch.no_grad():
            return float(task.loss(model, task.batch(np.random.default_rng(9)), torch.Generator()))

    before = held_out_loss()
    result = train(model, [task], config(), tmp_path, progress=False)
    after = held_out_loss()
    assert after < 0.01 * before
    torch.testing.assert_close(model.a.weight.T, task.w, atol=0.05, rtol=0)
    assert len(result.losses) == 200


class Crash(Exception):
    pass


class CrashingRegression(Regression):
    """Dies while drawing its `fatal`-th batch, like a process killed mid-run."""

    def __init__(self, *args, fatal, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.fatal = 0, fatal

    def batch(self, rng):
        self.calls += 1
        if self.calls == self.fatal:
            raise Crash
        return super().batch(rng)


def test_a_resumed_run_takes_exactly_the_steps_of_an_uninterrupted_one(tmp_path):
    straight = toy_model()
    train(straight, [Regression("a", "a"), Regression("b", "b", seed=1)],
          config(steps=100, checkpoint_every=40), tmp_path / "straight", progress=False)
    crashing = [CrashingRegression("a", "a", fatal=30), Regression("b", "b", seed=1)]
    with pytest.raises(Crash):
        train(toy_model(), crashing, config(steps=100, checkpoint_every=40), tmp_path / "crash",
              progress=False)
    assert torch.load(tmp_path / "crash" / "checkpoint.pt", weights_only=True)["step"] == 40
    resumed = toy_model(seed=123)  # another init: everything must come from the checkpoint
    result = train(resumed, [Regression("a", "a"), Regression("b", "b", seed=1)],
                   config(steps=100, checkpoint_every=40), tmp_path / "crash", progress=False)
    for name, p in straight.state_dict().items():
        assert torch.equal(p, resumed.state_dict()[name]), name
    assert [s for s, _, _ in result.losses] == list(range(100))


def test_tasks_are_drawn_in_proportion_to_their_weights(tmp_path):
    tasks = [Regression("a", "a", weight=3.0), Regression("b", "b", weight=1.0)]
    result = train(toy_model(), tasks, config(steps=400), tmp_path, progress=False)
    share = sum(1 for _, name, _ in result.losses if name == "a") / 400
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 400)


def test_a_model_with_quantized_layers_is_refused_with_the_fix(tmp_path):
    from aios.quant import ReferenceQuantizer
    from aios.quant.linear import quantize_linears

    model = quantize_linears(nn.ModuleDict({"a": nn.Linear(64, 64)}),
                             ReferenceQuantizer(group_size=32))
    with pytest.raises(AiosError, match="quantized.*dequantize_linears"):
        train(model, [Regression("a", "a")], config(steps=1), tmp_path)


def test_frozen_parameters_keep_their_exact_values(tmp_path):
    model = toy_model()
    frozen = {k: v.clone() for k, v in model.b.state_dict().items()}
    before_a = model.a.weight.clone()
    train(model, [Regression("a", "a")], config(steps=30), tmp_path,
          trainable=lambda name: name.startswith("a."), progress=False)
    for k, v in model.b.state_dict().items():
        assert torch.equal(v, frozen[k])
    assert not torch.equal(model.a.weight, before_a)


def test_the_learning_rate_warms_up_then_decays_by_cosine_to_the_floor():
    c = TrainConfig(steps=110, lr=1.0, min_lr=0.1, warmup=10)
    assert learning_rate(0, c) == pytest.approx(0.1)
    assert learning_rate(9, c) == pytest.approx(1.0)
    assert learning_rate(60, c) == pytest.approx(0.55)  # halfway through the cosine
    assert learning_rate(110, c) == pytest.approx(0.1)
    decay = [learning_rate(s, c) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_ema_is_the_exponential_average_of_the_parameter_history():
    p = torch.zeros(3)
    ema = EMA({"p": p}, decay=0.9)
    history = [torch.full((3,), float(v)) for v in (1, 2, 3)]
    expected = torch.zeros(3)
    for value in history:
        ema.update({"p": value})
        expected = 0.9 * expected + 0.1 * value
    torch.testing.assert_close(ema.shadow["p"], expected)


def test_training_writes_a_loss_curve_png_and_a_csv(tmp_path):
    result = train(toy_model(), [Regression("a", "a")], config(steps=20), tmp_path,
                   progress=False)
    assert result.loss_curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert rows[0] == "step,task,loss" and len(rows) == 21
    assert result.ema is not None and set(result.ema) == {"a.weight", "a.bias", "b.weight",
                                                          "b.bias"}


def test_a_loss_that_becomes_nan_stops_training_naming_task_and_step(tmp_path):
    with pytest.raises(AiosError, match=r"the loss of task 'a' became nan at step 0"):
        train(toy_model(), [Regression("a", "a", scale=float("nan"))], config(steps=5), tmp_path,
              progress=False)


def test_resuming_with_another_seed_is_refused(tmp_path):
    train(toy_model(), [Regression("a", "a")], config(steps=10), tmp_path, progress=False)
    with pytest.raises(AiosError, match="trained with seed 0 but this run uses seed 1"):
        train(toy_model(), [Regression("a", "a")], config(steps=20, seed=1), tmp_path,
              progress=False)


def test_a_corrupt_checkpoint_is_reported_with_the_fix(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AiosError, match=r"cannot be read \(UnpicklingError: .*\); delete it to "
                                        "start over"):
        train(toy_model(), [Regression("a", "a")], config(steps=5), tmp_path, progress=False)


@pytest.mark.parametrize("weights", [[0.0], [-1.0, 2.0]])
def test_bad_task_weights_are_refused(tmp_path, weights):
    tasks = [Regression(f"t{i}", "a", weight=w) for i, w in enumerate(weights)]
    with pytest.raises(ValueError, match="task weights must be non-negative"):
        train(toy_model(), tasks, config(steps=1), tmp_path, progress=False)
