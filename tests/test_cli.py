import json
import subprocess
import sys

import pytest

import aios
from aios.cli import app as cli
from conftest import make_plugin, registering


def run_cli(*argv):
    """Run `aios ARGV` in a fresh process, against the installed plugins."""
    return subprocess.run([sys.executable, "-m", "aios.cli", *argv],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def use_registry(monkeypatch):
    def use(registry):
        monkeypatch.setattr(cli, "default_registry", lambda: registry)
        return registry

    return use


@pytest.mark.parametrize("argv", [[], ["plugins"], ["config"], ["config", "show"], ["doctor"],
                                  ["generate"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main([*argv, "--help"])
    assert caught.value.code == 0
    assert "usage: aios" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_a_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["generate", "x", "--steps", "many"])
    assert caught.value.code == 2


def test_a_config_typo_exits_2_naming_the_key_and_the_fix(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("sampler: {nmae: ddim}\n")
    result = run_cli("--config", str(path), "config", "show")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"aios: error: {path}:1: sampler.nmae: unknown key; did you mean 'name'? "
        "Valid keys: eos_guard, name, schedule, steps, temperature, top_p (sampler "
        "'low-confidence' takes: schedule, temperature, top_p, eos_guard)")


def test_plugins_json_lists_the_core_the_native_layer_and_every_pack_with_versions():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["contract_version"] == aios.CONTRACT_VERSION
    found = {p["name"]: (p["distribution"], p["version"]) for p in data["plugins"]}
    assert found["core"] == ("aios", aios.__version__)
    assert {"native", "samplers", "text", "image", "audio"} <= found.keys()
    assert found["native"][0] == "aios-native"
    assert data["failures"] == []


def test_plugins_shows_registrations_and_load_failures(toys, use_registry, capsys):
    def boom(register):
        raise KeyError("x")

    toys.add_plugin(make_plugin(aios_register_heads=boom), name="bad", distribution="bad-dist",
                    version="0.0.1")
    use_registry(toys)
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert f"toys    aios-toys  1.2      {aios.CONTRACT_VERSION}       head: noisy; sampler: " \
           "halfway, still; conditioner: tag" in out
    assert "1 plugin(s) failed to load and were skipped, 0 registration(s) refused:" in out
    assert "plugin 'bad' (bad-dist 0.0.1) skipped at register: KeyError: 'x'" in out
    assert cli.main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["registrations"]["sampler"]["halfway"]["family"] == "continuous"
    assert data["failures"][0]["stage"] == "register"


def test_config_show_prints_each_effective_value_and_where_it_came_from(toys, use_registry,
                                                                        capsys):
    use_registry(toys)
    assert cli.main(["--set", "sampler.steps=8", "config", "show"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["sampler.name"].split(None, 2)[1:] == [
        '"halfway"', "auto -> best installed sampler (priority 10) of: halfway"]
    assert rows["sampler.steps"].split() == ["sampler.steps", "8", "--set"]
    assert rows["generate.seed"].split() == ["generate.seed", "null", "default"]
    assert cli.main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["head"] == {"name": "noisy"}


def test_generate_without_a_head_exits_2_and_says_which_pack_to_install(use_registry, capsys):
    use_registry(aios.Registry())
    assert cli.main(["generate", "hello"]) == 2
    err = capsys.readouterr().err
    assert "no head plugin is installed. Install a modality pack: `pip install aios-text`" in err


def test_generate_prints_the_output(toys, use_registry, capsys):
    use_registry(toys)
    assert cli.main(["generate", "p", "--steps", "1", "--seed", "0"]) == 0
    assert "'state': array(" in capsys.readouterr().out


def test_a_failure_at_run_time_exits_1(use_registry, capsys):
    def broken():
        raise RuntimeError("no weights")

    registry = aios.Registry()
    registry.add_plugin(make_plugin(**registering("aios_register_heads", ("b", broken, {}))),
                        name="p", distribution="d", version="1")
    use_registry(registry)
    assert cli.main(["generate", "x"]) == 1
    assert "head 'b' from package d 1 raised RuntimeError: no weights" in capsys.readouterr().err


def test_doctor_reports_versions_the_native_layer_and_no_problems():
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[core] aios " in result.stdout
    assert "[native] aios-native " in result.stdout
    assert "  torch: " in result.stdout and "  SIMD: " in result.stdout
    assert result.stdout.rstrip().endswith("no problems found")


def test_doctor_exits_1_and_lists_load_errors_and_a_missing_native_layer(toys, use_registry,
                                                                         capsys):
    toys.add_plugin(make_plugin(contract="7.0"), name="future", distribution="fut", version="3")
    use_registry(toys)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s):" in out
    assert "plugin 'future' (fut 3) skipped at contract" in out
    assert "aios_native is not installed" in out


def test_generate_with_memory_shows_the_retrieved_passages_on_stderr(use_registry, tmp_path,
                                                                     capsys):
    from aios.memory import reference_store
    from conftest import WordsEmbedder, memory_registry

    use_registry(memory_registry())
    texts = ["The river Quell flows into the Marn Sea.", "Tarn castle stands on a rock."]
    with reference_store(str(tmp_path / "m"), WordsEmbedder.dim) as store:
        store.add(embeddings=WordsEmbedder().embed(texts), contents=texts, source=["a", "b"])
    assert cli.main(["--set", "memory.backend=reference", "generate", "the river Quell",
                     "--memory", str(tmp_path / "m"), "--show-memory"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "the river Quell [The river Quell flows into the Marn Sea.]"
    # the score shown is the ranking's: cosine + 0.5 x word overlap (1: the only passage
    # above min_score holds every word of the prompt)
    passage, prompt = WordsEmbedder().embed([texts[0], "the river Quell"])
    cosine = float(passage @ prompt)
    assert f"memory: {cosine + 0.5:.3f}  The river Quell flows into the Marn Sea.  (a)" in out.err


def test_generate_remember_stores_the_generation(use_registry, tmp_path, capsys):
    from aios.memory import reference_store
    from conftest import WordsEmbedder, memory_registry

    use_registry(memory_registry())
    with reference_store(str(tmp_path / "m"), WordsEmbedder.dim):
        pass
    assert cli.main(["--set", "memory.backend=reference", "--set", f"memory.path={tmp_path}/m",
                     "generate", "hello there", "--remember"]) == 0
    with reference_store(str(tmp_path / "m")) as store:
        assert [r["content"] for b in store.batches() for r in b.to_pylist()] == [
            "hello there []"]


def test_generate_with_a_memory_that_is_not_a_store_exits_2_saying_how_to_fill_it(
        use_registry, tmp_path, capsys):
    from conftest import memory_registry

    use_registry(memory_registry())
    assert cli.main(["generate", "x", "--memory", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert f"no memory store at {tmp_path / 'none'} (" in err
    assert "is not a memory store" in err  # the backend's own reason
    assert "; fill one first: aios memory add" in err
    assert not (tmp_path / "none").exists()  # asking created nothing


def test_debug_shows_the_traceback_of_a_plugin_error_and_the_plain_run_does_not(
        use_registry, capsys):
    def broken():
        raise RuntimeError("no weights")

    registry = aios.Registry()
    registry.add_plugin(make_plugin(**registering("aios_register_heads", ("b", broken, {}))),
                        name="p", distribution="d", version="1")
    use_registry(registry)
    assert cli.main(["generate", "x"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["--debug", "generate", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise RuntimeError("no weights")' in err
    assert err.rstrip().endswith("head 'b' from package d 1 raised RuntimeError: no weights")


def test_plugins_verbose_shows_each_heads_parameters_beside_the_backbones(toys, use_registry,
                                                                           capsys):
    class Counted:
        modality, family = "toy", "continuous"

        def parameter_counts(self):
            return {"backbone": 900, "head": 100}

    toys.add_plugin(make_plugin(**registering("aios_register_heads",
                                              ("counted", Counted, {"family": "continuous"}))),
                    name="counted", distribution="counted", version="1")
    use_registry(toys)
    assert cli.main(["plugins", "--verbose"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip()}
    assert rows["counted"][1:] == ["toy", "100", "900", "90.0%"]
    assert rows["noisy"][1:] == ["toy", "(not", "reported)"]


def test_generate_out_with_a_head_that_cannot_write_files_exits_1(toys, use_registry, capsys,
                                                                   tmp_path):
    use_registry(toys)
    assert cli.main(["generate", "p", "--steps", "1", "--out", str(tmp_path / "x.png")]) == 1
    assert "cannot write it to a file" in capsys.readouterr().err
