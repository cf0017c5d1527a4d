"""Data never names code: `module:function` schedules from configs and model directories are
refused unless code is trusted (`--trust-code`, `AIOS_TRUST_CODE=1`); issue 23, item 8."""

import numpy as np
import pytest

from aios.cli import app as cli
from aios.models.gaussian import save_continuous_model
from aios.schedules import (
    UntrustedCodeError,
    code_is_trusted,
    masking_schedule,
    schedule_from_config,
    trust_code,
)
from tests.test_gaussian import small_model
from tests.test_gaussian_numpy import SETTINGS, ToyHead

CALLS: list[str] = []


def alpha_bar(u):
    CALLS.append("alpha_bar")
    return np.cos(np.asarray(u) * np.pi / 2) ** 2 * 0.98 + 0.01


def alpha(t):
    CALLS.append("alpha")
    return 1.0 - np.asarray(t)


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv("AIOS_TRUST_CODE", raising=False)
    trust_code(False)
    CALLS.clear()
    yield
    trust_code(False)


@pytest.mark.parametrize("build, value", [(schedule_from_config, "test_untrusted_code:alpha_bar"),
                                          (masking_schedule, "test_untrusted_code:alpha"),
                                          (masking_schedule, "builtins:print")])
def test_a_schedule_naming_code_is_refused_with_the_way_to_allow_it(build, value):
    with pytest.raises(UntrustedCodeError, match="--trust-code.*AIOS_TRUST_CODE=1"):
        build(value)
    assert CALLS == []


def test_the_environment_variable_trusts_code(monkeypatch):
    monkeypatch.setenv("AIOS_TRUST_CODE", "1")
    assert masking_schedule("test_untrusted_code:alpha").alpha(0.25) == pytest.approx(0.75)
    assert CALLS


def test_built_in_names_tables_and_python_callables_need_no_trust():
    assert masking_schedule("cosine").name == "cosine"
    assert masking_schedule([1.0, 0.5, 0.0]).alpha(0.5) == pytest.approx(0.5)
    assert masking_schedule(alpha).alpha(0.5) == pytest.approx(0.5)  # code the caller wrote
    assert schedule_from_config({"betas": [0.1, 0.2]}).num_train_timesteps == 2


def test_a_model_directory_naming_code_is_refused(tmp_path):
    save_continuous_model(tmp_path, small_model(), "toy",
                          {**SETTINGS, "schedule": "test_untrusted_code:alpha_bar"})
    with pytest.raises(UntrustedCodeError, match="names Python code"):
        ToyHead(tmp_path)
    assert CALLS == []
    trust_code()
    assert ToyHead(tmp_path).schedule.num_train_timesteps == SETTINGS["num_train_timesteps"]


def test_the_trust_code_flag_trusts_code_for_the_command(capsys):
    assert cli.main(["config", "show"]) == 0 and not code_is_trusted()
    assert cli.main(["--trust-code", "config", "show"]) == 0 and code_is_trusted()
