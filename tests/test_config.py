import dataclasses
from pathlib import Path

import pytest

import aios
from aios.config import Config, load_config
from aios.errors import ConfigError
from conftest import NoisyHead, make_plugin, registering

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="aios.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_defaults_file_in_the_repository_is_exactly_the_built_in_defaults():
    assert load_config(REPO / "config" / "default.yaml") == Config()
    assert load_config() == Config()


def test_a_file_is_read_into_typed_values_that_remember_their_line(tmp_path, toys):
    path = write(tmp_path, "head:\n  name: noisy\n  size: 3\nsampler:\n  steps: 7\n")
    config = load_config(path, registry=toys)
    assert config.head.name == "noisy"
    assert dict(config.head.options) == {"size": 3}
    assert config.sampler.steps == 7
    assert config.origins["sampler.steps"] == f"{path}:5"
    assert config.origins["head.size"] == f"{path}:3"


def test_the_typo_in_a_key_names_the_key_path_and_suggests_the_right_key(tmp_path):
    path = write(tmp_path, "sampler: {nmae: ddim}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.key_path == "sampler.nmae"
    assert str(error) == (
        f"{path}:1: sampler.nmae: unknown key; did you mean 'name'? Valid keys: name, steps")
    assert error.exit_code == 2


def test_an_unknown_top_level_section_is_named_with_suggestions(tmp_path):
    with pytest.raises(ConfigError, match=r":2: samplr: unknown key; did you mean 'sampler'\?"):
        load_config(write(tmp_path, "head: {}\nsamplr: {steps: 3}\n"))


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("sampler: {steps: many}\n", "sampler.steps", "expected int, got str 'many'"),
        ("sampler: {steps: 2.5}\n", "sampler.steps", "expected int, got float 2.5"),
        ("sampler: {steps: true}\n", "sampler.steps", "expected int, got bool True"),
        ("generate: {guidance_scale: [1]}\n", "generate.guidance_scale",
         "expected float, got a list [1]"),
        ("memory: {path: 3}\n", "memory.path", "expected str or null, got int 3"),
        ("sampler: 5\n", "sampler", "expected a mapping, got int"),
        ("conditioners: {name: x}\n", "conditioners", "expected a list, got a mapping"),
        ("conditioners: [{top_k: 3}]\n", "conditioners.0", "a conditioner needs a `name`"),
    ],
)
def test_wrong_types_name_the_key_and_what_was_expected(tmp_path, text, key, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key_path == key
    assert caught.value.problem == problem
    assert caught.value.source.startswith(str(tmp_path))


def test_an_integer_is_accepted_where_a_float_is_expected(tmp_path):
    config = load_config(write(tmp_path, "generate: {guidance_scale: 3}\n"))
    assert config.generate.guidance_scale == 3.0
    assert isinstance(config.generate.guidance_scale, float)


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "head:\n  name: x\n sampler: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source.startswith(f"{path}:")
    assert caught.value.problem.startswith("malformed YAML")
    assert "fix the YAML syntax" in caught.value.fix


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="the top level is a list, not a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_an_empty_file_means_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="the config file does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_an_unknown_plugin_name_is_named_with_suggestions_and_the_choices(tmp_path, toys):
    path = write(tmp_path, "sampler:\n  name: halfwya\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, registry=toys)
    assert str(caught.value) == (
        f"{path}:2: sampler.name: unknown sampler 'halfwya' (did you mean 'halfway'?); "
        "use one of: halfway, still, or `auto`")


def test_an_unknown_backend_with_none_installed_says_what_to_install(toys):
    with pytest.raises(ConfigError, match=r"memory.backend: unknown storage 'native'; Install "
                                          r"the native backend: `pip install aios-native`"):
        load_config(overrides=["memory.backend=native"], registry=toys)


def test_auto_resolves_to_the_best_installed_plugin_and_says_so(toys):
    config = load_config(registry=toys)
    assert config.head.name == "noisy"
    # the head is continuous, so auto skips the higher-priority discrete sampler
    assert config.sampler.name == "halfway"
    assert config.origins["sampler.name"] == (
        "auto -> best installed sampler (priority 10) of: halfway")
    assert config.memory.backend == "auto"
    assert config.origins["memory.backend"] == "auto: no storage installed"


def test_a_sampler_of_the_wrong_family_is_refused(toys):
    with pytest.raises(ConfigError, match="sampler 'still' is discrete but the head is continuous; "
                                          "choose a continuous sampler: halfway"):
        load_config(overrides=["sampler.name=still"], registry=toys)


def test_plugin_options_are_checked_against_the_factory(toys):
    config = load_config(overrides=["sampler.fraction=0.25"], registry=toys)
    assert dict(config.sampler.options) == {"fraction": 0.25}
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=["sampler.fracton=0.25"], registry=toys)
    assert caught.value.key_path == "sampler.fracton"
    assert caught.value.fix == ("did you mean 'fraction'? Valid keys: fraction, name, steps "
                                "(sampler 'halfway' takes: fraction)")
    with pytest.raises(ConfigError, match="expected float, got str 'lots'"):
        load_config(overrides=["sampler.fraction=lots"], registry=toys)


def test_a_required_plugin_option_that_is_missing_is_named():
    registry = aios.Registry()

    def needs_model(model: str):
        return NoisyHead()

    registry.add_plugin(make_plugin(**registering("aios_register_heads", ("m", needs_model, {}))),
                        name="p", distribution="d", version="1")
    with pytest.raises(ConfigError, match=r"head.model: head 'm' requires 'model'; set it, e.g. "
                                          r"`--set head.model=...`"):
        load_config(registry=registry)
    assert load_config(overrides=["head.model=/m"], registry=registry).head.options["model"] == "/m"


def test_overrides_win_over_the_file_and_say_so(tmp_path):
    path = write(tmp_path, "sampler: {steps: 7}\n")
    config = load_config(path, ["sampler.steps=20", "generate.seed=3"])
    assert (config.sampler.steps, config.generate.seed) == (20, 3)
    assert config.origins["sampler.steps"] == "--set"


def test_overrides_reach_into_lists_and_accept_the_name_shorthand(toys):
    config = load_config(overrides=["conditioners.0.name=tag", "conditioners.0.tag=t",
                                    "conditioners.1=tag"], registry=toys)
    assert [(c.name, dict(c.options)) for c in config.conditioners] == [
        ("tag", {"tag": "t"}), ("tag", {})]


@pytest.mark.parametrize("bad", ["sampler.steps", "=3", "conditioners.x.name=a"])
def test_a_malformed_override_is_a_config_error(bad):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[bad])
    assert caught.value.source == "--set"


def test_a_bad_override_value_is_reported_as_coming_from_the_command_line():
    with pytest.raises(ConfigError, match=r"^--set: sampler.steps: expected int"):
        load_config(overrides=["sampler.steps=abc"])


def test_the_config_env_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOS_CONFIG", str(write(tmp_path, "sampler: {steps: 9}\n")))
    assert load_config().sampler.steps == 9


def test_the_effective_config_round_trips_through_yaml(tmp_path, toys):
    config = load_config(overrides=["sampler.fraction=0.3", "conditioners.0=tag",
                                    "generate.seed=5"], registry=toys)
    again = load_config(write(tmp_path, config.to_yaml()), registry=toys)
    assert again == config


def test_config_objects_are_immutable(toys):
    config = load_config(overrides=["sampler.fraction=0.3"], registry=toys)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sampler.steps = 3
    with pytest.raises(TypeError):
        config.sampler.options["fraction"] = 1.0
    with pytest.raises(TypeError):
        config.origins["x"] = "y"


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = 1

    def __post_init__(self):
        if self.size < 1:
            raise ValueError("size must be positive")


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str = "x"
    inner: _Inner = _Inner()
    tags: tuple[str, ...] = ()
    rate: float = 0.5


def test_parse_dataclass_builds_nested_values_and_tuples():
    from aios.config import parse_dataclass

    parsed = parse_dataclass(_Outer, {"inner": {"size": 3}, "tags": ["a", "b"], "rate": 1},
                             source="r.yaml")
    assert parsed == _Outer(inner=_Inner(3), tags=("a", "b"), rate=1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"sise": 3}}, "r.yaml: inner.sise: unknown key; did you mean 'size'?"),
        ({"tags": "a"}, "r.yaml: tags: expected a list, got str"),
        ({"tags": [1]}, "r.yaml: tags.0: expected str, got int 1"),
        ({"inner": {"size": 0}}, "r.yaml: inner: size must be positive"),
        ([1], "r.yaml: (document): expected a mapping, got a list"),
    ],
)
def test_parse_dataclass_reports_where_and_what(data, message):
    from aios.config import parse_dataclass

    with pytest.raises(ConfigError) as caught:
        parse_dataclass(_Outer, data, source="r.yaml")
    assert str(caught.value).startswith(message)


def test_an_unknown_memory_embedder_is_a_config_error_with_suggestions():
    from conftest import with_words_embedder

    registry = with_words_embedder(aios.Registry())
    assert load_config(overrides=["memory.embedder=words"], registry=registry).memory.embedder \
        == "words"
    with pytest.raises(ConfigError, match=r"memory.embedder.*unknown embedder 'wrods' \(did you "
                                          r"mean 'words'\?\)"):
        load_config(overrides=["memory.embedder=wrods"], registry=registry)


def test_memory_chunking_and_write_back_are_typed_config_keys():
    config = load_config(overrides=["memory.chunk_size=300", "memory.write_back=true"])
    assert (config.memory.chunk_size, config.memory.write_back) == (300, True)
    with pytest.raises(ConfigError, match="memory.chunk_size"):
        load_config(overrides=["memory.chunk_size=big"])


def test_an_auto_memory_embedder_resolves_to_the_best_installed_one():
    from conftest import with_words_embedder

    config = load_config(registry=with_words_embedder(aios.Registry()))
    assert config.memory.embedder == "words"
    assert config.origins["memory.embedder"].startswith("auto -> best installed embedder")


def test_an_auto_head_follows_the_requested_modality(toys):
    class Picture(NoisyHead):
        modality = "picture"

    toys.add_plugin(make_plugin(**registering("aios_register_heads",
                                              ("pic", Picture, {"family": "continuous",
                                                                "priority": -5}))),
                    name="pics", distribution="pics", version="1")
    assert load_config(registry=toys).head.name == "noisy"
    config = load_config(overrides=["generate.modality=picture"], registry=toys)
    assert config.head.name == "pic"
    assert config.origins["head.name"] == (
        "auto -> best installed head for modality 'picture' (priority -5) of: pic")
    named = load_config(overrides=["generate.modality=picture", "head.name=noisy"],
                        registry=toys)
    assert named.head.name == "noisy"  # a named head is never replaced


def test_a_qualified_name_selects_a_registration_that_lost_its_name_to_another_plugin():
    from conftest import HalfwaySampler, toy_registry

    registry = toy_registry()

    class Other(HalfwaySampler):
        """Another halfway sampler."""

    hooks = registering("aios_register_samplers",
                        ("halfway", Other, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="other", distribution="other-dist",
                        version="1")
    config = load_config(overrides=["sampler.name=other:halfway", "sampler.fraction=0.25"],
                         registry=registry)
    assert config.sampler.name == "other:halfway"
    assert registry.get("sampler", config.sampler.name).factory is Other
    assert load_config(overrides=["sampler.name=halfway"], registry=registry).sampler.name == \
        "halfway"
    with pytest.raises(ConfigError, match="unknown sampler 'nobody:halfway'"):
        load_config(overrides=["sampler.name=nobody:halfway"], registry=registry)
