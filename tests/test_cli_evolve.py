import numpy as np

from aios.cli import app as cli
from aios.evolve.adapters import Adapter, AdapterInfo, AdapterStore


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


def test_deleting_an_unknown_adapter_is_a_usage_error_that_deletes_nothing(tmp_path, capsys):
    save_adapter(tmp_path)
    assert run("adapters", "delete", "docs", "doc", directory=tmp_path) == 2
    err = capsys.readouterr().err
    assert f"aios: error: no adapter 'doc' in {tmp_path}; did you mean 'docs'?" in err
    assert AdapterStore(tmp_path).names() == ["docs"]


def test_evolve_without_text_is_a_usage_error(tmp_path, capsys):
    assert run("evolve", directory=tmp_path) == 2
    assert "PATH... or --from-memory" in capsys.readouterr().err


def test_an_unknown_option_of_the_adapter_kind_is_a_config_error(tmp_path, capsys):
    assert run("--set", "evolve.rnak=4", "adapters", "list", directory=tmp_path) == 2
    assert "rank" in capsys.readouterr().err


def test_the_ladder_is_every_installed_kind_cheapest_first_by_default():
    from aios.config import load_config
    from aios.registry import default_registry

    config = load_config(None, [], default_registry())
    assert config.evolve.adapter == ("sidenet", "lora")
    assert "cheapest first" in config.origins["evolve.adapter"]


def test_each_kind_of_the_ladder_gets_only_the_options_it_takes():
    from aios.cli.evolve import adapter_ladder
    from aios.config import load_config
    from aios.registry import default_registry

    config = load_config(None, ["evolve.adapter=[lora, sidenet]", "evolve.rank=2",
                                "evolve.hidden=64", "evolve.steps=7"], default_registry())
    lora, side = adapter_ladder(config)
    assert (lora.kind, lora.rank, lora.settings["steps"]) == ("lora", 2, 7)
    assert (side.kind, side.hidden, side.settings["steps"]) == ("sidenet", 64, 7)


def test_an_unknown_kind_in_the_ladder_is_a_config_error(tmp_path, capsys):
    assert run("--set", "evolve.adapter=[sidenet, lorra]", "adapters", "list",
               directory=tmp_path) == 2
    assert "unknown adapter 'lorra'" in capsys.readouterr().err


class _Rung:
    """An adapter kind whose verdict is fixed, to test the climbing alone."""

    def __init__(self, kind, kept):
        self.kind, self.kept, self.calls = kind, kept, []

    def evolve(self, model, name, **args):
        self.calls.append(name)
        return type("Decision", (), {"kind": self.kind, "kept": self.kept})()


def test_climbing_stops_at_the_first_kept_adapter():
    from aios.cli.evolve import climb

    rungs = [_Rung("sidenet", False), _Rung("lora", True), _Rung("big", True)]
    decisions = climb(rungs, None, "docs")
    assert [d.kind for d in decisions] == ["sidenet", "lora"]
    assert rungs[2].calls == []


def test_climbing_past_every_rung_keeps_nothing():
    from aios.cli.evolve import climb

    decisions = climb([_Rung("sidenet", False), _Rung("lora", False)], None, "docs")
    assert [d.kept for d in decisions] == [False, False]
