"""A plugin package written by someone else, installed with pip, found through its entry point.

The packages go into a temporary site directory (`pip install --target`) that is put on the
path of the processes under test, so a failing test can never leave them installed.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aios.config import load_config
from aios.engine import ArrowEngine
from aios.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aios-shout"


def pip_install(source: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )


def broken_package(root: Path) -> Path:
    package = root / "aios-broken"
    package.mkdir()
    (package / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "aios-broken"
        version = "6.6.6"

        [project.entry-points.aios]
        broken = "aios_broken"

        [tool.setuptools]
        py-modules = ["aios_broken"]
        """))
    (package / "aios_broken.py").write_text('raise RuntimeError("this plugin is broken")\n')
    return package


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site directory holding the example plugin and a plugin that raises on import."""
    root = tmp_path_factory.mktemp("third_party")
    target = root / "site"
    shout = root / "aios-shout"
    shutil.copytree(EXAMPLE, shout)
    pip_install(shout, target)
    pip_install(broken_package(root), target)
    return target


def aios_cli(site: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                                      os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "aios.cli", *argv], env=env,
                          capture_output=True, text=True, check=False)


def test_the_installed_plugin_is_listed_with_its_package_and_registrations(site):
    result = aios_cli(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    shout = next(p for p in data["plugins"] if p["name"] == "shout")
    assert (shout["distribution"], shout["version"]) == ("aios-shout", "0.1.0")
    assert shout["registered"] == {"head": ["shout"], "sampler": ["left-to-right"]}


def test_the_plugin_is_selected_by_config_and_generates_through_the_engine(site, tmp_path):
    config = tmp_path / "shout.yaml"
    config.write_text("head: {name: shout}\nsampler: {name: left-to-right, steps: 3}\n")
    result = aios_cli(site, "--config", str(config), "generate", "hello plugins")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HELLO PLUGINS\n"


def test_the_engine_runs_the_plugin_in_process_step_by_step(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    registry = Registry.discover()
    config = load_config(overrides=["head.name=shout", "sampler.name=left-to-right",
                                    "sampler.steps=4"], registry=registry)
    states = []
    out = ArrowEngine.from_config(config, registry=registry).diffuse(
        "abcdefgh", callback=lambda step, n, state: states.append("".join(
            "_" if c == state.mask_id else chr(c - 1) for c in state.tokens[0])))
    assert out == "ABCDEFGH"
    assert states == ["AB______", "ABCD____", "ABCDEF__", "ABCDEFGH"]


def test_a_plugin_that_raises_on_import_is_reported_and_the_others_keep_working(site):
    result = aios_cli(site, "plugins", "--json")
    data = json.loads(result.stdout)
    [failure] = [f for f in data["failures"] if f["plugin"] == "broken"]
    assert failure == {"plugin": "broken", "distribution": "aios-broken", "version": "6.6.6",
                       "stage": "import", "error": "RuntimeError: this plugin is broken"}
    assert {"core", "shout"} <= {p["name"] for p in data["plugins"]}
    text = aios_cli(site, "plugins").stdout
    assert "plugin 'broken' (aios-broken 6.6.6) skipped at import: RuntimeError: this plugin " \
           "is broken" in text
    generated = aios_cli(site, "--set", "head.name=shout", "--set", "sampler.name=left-to-right",
                         "generate", "still works")
    assert generated.stdout == "STILL WORKS\n"
    doctor = aios_cli(site, "doctor")
    assert doctor.returncode == 1
    assert "aios-broken 6.6.6" in doctor.stdout
