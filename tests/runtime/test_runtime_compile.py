"""`runtime.compile`: the flag parses and reaches the runtime choice, is refused with the key
and the fix when it is not a boolean, when torch is absent or with the numpy runtime, and a
compiled network computes the eager network's logits (dynamic shapes: two lengths, one graph)."""

import sys
from pathlib import Path

import pytest
import torch

from aios.config import load_config
from aios.errors import ConfigError
from aios.runtime import compiling, select_from_config, select_runtime

sys.path.insert(0, str(Path(__file__).parents[1] / "models" / "families"))
from family_nets import MDLM_CONFIG, mdlm_weights, write_checkpoint


def test_the_flag_is_off_by_default_and_parses_from_a_file_and_the_command_line(tmp_path):
    assert load_config().runtime.compile is False
    path = tmp_path / "aios.yaml"
    path.write_text("runtime:\n  compile: true\n")
    config = load_config(path)
    assert config.runtime.compile is True
    assert config.origins["runtime.compile"] == f"{path}:2"
    assert load_config(overrides=["runtime.compile=true"]).runtime.compile is True


def test_compiling_makes_auto_pick_torch_and_says_why():
    choice = select_from_config(load_config(overrides=["runtime.compile=true",
                                                       "runtime.device=cpu"]))
    assert (choice.name, choice.compile) == ("torch", True)
    assert choice.reasons["name"] == ("auto -> torch: runtime.compile: true compiles a torch "
                                      "network")
    assert select_runtime(device="cpu").compile is False


@pytest.mark.parametrize("value", ['"sometimes"', "1", "[true]"])
def test_a_value_that_is_not_a_boolean_is_refused_naming_file_line_and_key(tmp_path, value):
    path = tmp_path / "aios.yaml"
    path.write_text(f"runtime:\n  compile: {value}\n")
    with pytest.raises(ConfigError, match=r"runtime.compile: expected bool") as caught:
        load_config(path)
    assert caught.value.source == f"{path}:2"


def test_a_non_boolean_given_in_code_is_refused():
    with pytest.raises(ConfigError, match="runtime.compile: expected true or false, got 'yes'"):
        select_runtime(compile="yes")


def test_without_torch_compile_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ConfigError, match="needs torch, which is not installed; install "
                                          "torch .*or set runtime.compile: false"):
        select_runtime(name="torch", device="cpu", dtype="float32", compile=True)


def test_on_a_cpu_without_a_cpp_compiler_compile_is_refused_with_the_fix(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"no C\+\+ compiler .* was found; install one "):
        select_runtime(name="torch", device="cpu", compile=True)


def test_the_numpy_runtime_has_nothing_to_compile():
    with pytest.raises(ConfigError, match="the numpy runtime has no torch network to compile; set "
                                          "runtime.name: torch"):
        select_runtime(name="numpy", compile=True)


@pytest.mark.skipif(compiling.cpp_compiler() is None,
                    reason="torch.compile on a CPU needs a C++ compiler (scripts/dev installs g++)")
def test_a_compiled_network_gives_the_eager_logits(tmp_path):
    from aios.models.families import load_pretrained

    model = load_pretrained(write_checkpoint(tmp_path, mdlm_weights(), MDLM_CONFIG))
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 70, (2, n), generator=generator) for n in (9, 16)]
    with torch.inference_mode():
        eager = [model.network(ids).logits for ids in inputs]
    choice = select_runtime(name="torch", device="cpu", dtype="float32", compile=True)
    network = choice.prepare(model.network)
    assert network is model.network and network._compiled_call_impl is not None
    assert list(network.state_dict()) == list(model.network.state_dict())  # names unchanged
    with torch.inference_mode():
        for ids, expected in zip(inputs, eager, strict=True):
            torch.testing.assert_close(network(ids).logits, expected, atol=1e-5, rtol=1e-5)
