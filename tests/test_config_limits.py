"""YAML configs are read within limits: size, alias expansion, nesting (issue 23, item 5)."""

import resource

import pytest

from aios.config import MAX_CONFIG_BYTES, MAX_CONFIG_NODES, load_config
from aios.errors import ConfigError

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True))


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 600  # 9**9 values once expanded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match=f"expand to more than {MAX_CONFIG_NODES}"):
        load_config(path)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000  # it used 5.7 GB before


def test_an_alias_bomb_in_a_set_override_is_not_expanded():
    flow = "{" + ", ".join(BOMB.strip().splitlines()) + "}"
    with pytest.raises(ConfigError, match=f"expand to more than {MAX_CONFIG_NODES}"):
        load_config(overrides=[f"sampler.schedule={flow}"])


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("sampler: &s\n  steps: [*s]\n")
    with pytest.raises(ConfigError, match="expands without end"):
        load_config(path)


def test_shared_aliases_within_the_limit_are_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("sampler: &s {steps: 12}\n")
    assert load_config(path).sampler.steps == 12


def test_a_config_larger_than_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="more than the"):
        load_config(path)


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("sampler: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError):
        load_config(path)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"sampler: {name: caf\xe9}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
