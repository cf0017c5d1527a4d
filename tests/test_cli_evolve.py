import numpy as np

from aios import cli
from aios.adapters import Adapter, AdapterInfo, AdapterStore


def save_adapter(directory, name="docs"):
    tensors = {"blocks.0.attn.out.lora_a": np.zeros((2, 4), np.float32),
               "blocks.0.attn.out.lora_b": np.zeros((6, 2), np.float32)}
    info = AdapterInfo(name, "lora", 2, "/models/m", 20, {"rank": 2, "alpha": 4.0},
                       {"new_before": 500.0, "new_after": 340.0}, "python-docstrings")
    AdapterStore(directory).save(Adapter(info, tensors))


def run(*args, directory):
    return cli.main(["--set", f"evolve.adapters_dir={directory}", *args])


def test_adapters_list_shows_each_adapter_with_its_scores(tmp_path, capsys):
    save_adapter(tmp_path)
    assert run("adapters", "list", directory=tmp_path) == 0
    out = capsys.readouterr().out
    assert "docs" in out and "lora" in out and "500.0 -> 340.0" in out


def test_adapters_list_of_an_empty_directory_says_how_to_make_one(tmp_path, capsys):
    assert run("adapters", "list", directory=tmp_path) == 0
    assert "aios evolve PATH" in capsys.readouterr().out


def test_adapters_delete_removes_the_file(tmp_path):
    save_adapter(tmp_path)
    assert run("adapters", "delete", "docs", directory=tmp_path) == 0
    assert AdapterStore(tmp_path).names() == []


def test_deleting_an_unknown_adapter_is_a_runtime_error(tmp_path, capsys):
    assert run("adapters", "delete", "nope", directory=tmp_path) == 1
    assert "no adapter 'nope'" in capsys.readouterr().err


def test_evolve_without_text_is_a_usage_error(tmp_path, capsys):
    assert run("evolve", directory=tmp_path) == 2
    assert "PATH... or --from-memory" in capsys.readouterr().err


def test_an_unknown_option_of_the_adapter_kind_is_a_config_error(tmp_path, capsys):
    assert run("--set", "evolve.rnak=4", "adapters", "list", directory=tmp_path) == 2
    assert "rank" in capsys.readouterr().err
