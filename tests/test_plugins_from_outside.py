"""The plugin contract, tested from the outside: packages pip-installed into a temporary target.

One package per plugin kind, written against the documented contract only (`aios.protocols`,
`aios.hookspecs`), must pass the conformance kits and work through the CLI; the fault packages
(raises on import, exits at import or in a hook, raises during generation, a newer minor or
major contract, a clash with a shipped name under an entry point sorting first and one sorting
last) must each leave the shipped packs working exactly as without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aios.hookspecs import CONTRACT_VERSION
from aios.protocols import AdapterDecision, AdapterKind
from aios.registry import FIRST_PARTY, Registry
from aios.testing import check_conditioner, check_embedder, check_quantizer, check_storage

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aios-shout"
MAJOR, MINOR = (int(p) for p in CONTRACT_VERSION.split("."))
HEADER = f'import aios\n\nAIOS_CONTRACT_VERSION = "{CONTRACT_VERSION}"\n'

#: Packages written against the documented contract, one per kind: (distribution, entry point,
#: module source).
KINDS = {
    "conditioner": ("aios-out-conditioner", "exclaim", HEADER + '''
class Exclaim:
    """Puts an exclamation before the prompt as context."""

    def __init__(self, mark: str = "!"):
        self.mark = mark

    def condition(self, request, context):
        return request.with_context(self.mark)


@aios.hookimpl
def aios_register_conditioners(register):
    register("exclaim", Exclaim)
'''),
    "embedder": ("aios-out-embedder", "hashed", HEADER + '''
import numpy as np


class Hashed:
    """Hashed bag of words: a text embedder without a model."""

    name, dim = "hashed", 32

    def embed(self, texts, *, progress=False):
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % self.dim] += 1.0
            out[row, self.dim - 1] += 0.5  # never the zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


@aios.hookimpl
def aios_register_embedders(register):
    register("hashed", Hashed, priority=-5)
'''),
    "quantizer": ("aios-out-quantizer", "outq", HEADER + '''
from aios.quant import ReferenceQuantizer


class Outside(ReferenceQuantizer):
    """The reference kernels under another name, as the hook's doc suggests."""


@aios.hookimpl
def aios_register_quantizers(register):
    register("outside", Outside, priority=-5)
'''),
    "storage": ("aios-out-storage", "nested", HEADER + '''
from pathlib import Path

from aios.memory import reference_store


class Nested:
    """Keeps the store one folder down, in PATH/data: no MANIFEST.json at PATH itself."""

    def __init__(self, path, *, dim=None, read_only=False, retention=None, **options):
        self.store = reference_store(str(Path(path) / "data"), dim, read_only=read_only,
                                     retention=retention, **options)
        self.path = Path(path)

    def __getattr__(self, name):
        return getattr(self.store, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.store.close()


@aios.hookimpl
def aios_register_storage(register):
    register("nested", Nested, priority=-5)
'''),
    "recipe": ("aios-out-recipe", "outrecipe", HEADER + '''
def train(*, recipe, out, progress):
    """Trains nothing, reports where it would have."""
    return {"out": out, "loss": 1.25}


def evaluate(*, model, baseline, data, progress):
    """Scores nothing, reports what it was given."""
    return {"model": str(model), "data": ",".join(data or [])}


@aios.hookimpl
def aios_register_recipes(register):
    register("outside", train)


@aios.hookimpl
def aios_register_evaluators(register):
    register("outside", evaluate)
'''),
    "adapter": ("aios-out-adapter", "outadapter", HEADER + '''
from dataclasses import dataclass


@dataclass
class Decision:
    name: str
    kind: str = "noop"
    level: int = 9
    kept: bool = False
    reason: str = "rejected: a no-op adapter cannot lower perplexity"
    parameters: int = 0
    model_parameters: int = 1000
    seconds: float = 0.0

    def table(self):
        return [("METRIC", "BEFORE", "AFTER"), ("perplexity", "12.0", "12.0")]


class Noop:
    """An adapter kind that trains nothing and is always rejected."""

    kind, level = "noop", 9

    def evolve(self, model, name, *, sources=(), texts=(), threshold=None, store,
               min_gain, max_base_loss, held_out, progress=True):
        return Decision(name)


@aios.hookimpl
def aios_register_adapters(register):
    register("noop", Noop, priority=-9)
'''),
}

#: The fault packages: distribution -> (entry point, module source).
FAULTS = {
    "aios-raises-on-import": ("raises", 'raise RuntimeError("this plugin is broken")\n'),
    "aios-exits-on-import": ("exits", "import sys\n\nsys.exit(3)\n"),
    "aios-interrupts-on-import": ("interrupts", "raise KeyboardInterrupt\n"),
    "aios-exits-in-hook": ("exits-hook", HEADER + '''
import sys


@aios.hookimpl
def aios_register_samplers(register):
    sys.exit("bye")
'''),
    "aios-explodes": ("explodes", HEADER + '''
class Explodes:
    """A discrete sampler that fails at run time."""

    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        raise RuntimeError("diverged at step 1")


@aios.hookimpl
def aios_register_samplers(register):
    register("explodes", Explodes, family="discrete", priority=-5)
'''),
    "aios-newer-minor": ("newer-minor", f'import aios\n\nAIOS_CONTRACT_VERSION = '
                                        f'"{MAJOR}.{MINOR + 1}"\n' + '''

class Future:
    family = "discrete"


@aios.hookimpl
def aios_register_samplers(register):
    register("future", Future, family="discrete")
'''),
    "aios-newer-major": ("newer-major", f'import aios\n\nAIOS_CONTRACT_VERSION = '
                                        f'"{MAJOR + 1}.0"\n' + '''

class NextGen:
    family = "discrete"


@aios.hookimpl
def aios_register_samplers(register):
    register("next-gen", NextGen, family="discrete")
'''),
    # The same intruder under an entry-point name that sorts before every shipped pack, and one
    # that sorts after: it claims shipped names with a priority meant to capture `auto`.
    "aios-clash-first": ("aaa-clash", HEADER + '''
class Intruder:
    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        raise RuntimeError("the intruder ran")


@aios.hookimpl
def aios_register_samplers(register):
    register("low-confidence", Intruder, family="discrete", priority=100)
    register("ddim", Intruder, family="discrete", priority=100)
    register("intruder-own", Intruder, family="discrete", priority=-5)
'''),
    "aios-clash-last": ("zzz-clash", HEADER + '''
class Intruder:
    family = "discrete"

    def sample(self, denoise, state, *, num_steps, rng, callback=None):
        raise RuntimeError("the intruder ran")


@aios.hookimpl
def aios_register_samplers(register):
    register("low-confidence", Intruder, family="discrete", priority=100)
    register("ddim", Intruder, family="discrete", priority=100)
'''),
}

GENERATE = ("generate", "Once upon a time", "--seed", "1", "--steps", "4", "--length", "8")


def write_package(root: Path, distribution: str, entry: str, source: str) -> Path:
    module = distribution.replace("-", "_")
    package = root / distribution
    package.mkdir()
    (package / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{distribution}"
        version = "1.0"

        [project.entry-points.aios]
        {entry} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    (package / f"{module}.py").write_text(source)
    return package


def pip_install(target: Path, *sources: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), *map(str, sources)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def aios_cli(site: Path | None, *argv: str, cwd: Path | None = None
             ) -> subprocess.CompletedProcess:
    paths = [str(site)] if site else []
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [*paths, os.environ.get("PYTHONPATH")]))}
    env.pop("AIOS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "aios.cli", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outside-sources")
    built = {dist: write_package(root, dist, entry, source)
             for dist, (entry, source) in FAULTS.items()}
    built |= {dist: write_package(root, dist, entry, source)
              for dist, entry, source in KINDS.values()}
    shout = root / "aios-shout"
    shutil.copytree(EXAMPLE, shout)
    built["aios-shout"] = shout
    return built


@pytest.fixture(scope="module")
def site(sources, tmp_path_factory) -> Path:
    """Every package at once: the kinds, the shout example and all the faults."""
    target = tmp_path_factory.mktemp("outside-site")
    pip_install(target, *sources.values())
    return target


@pytest.fixture(scope="module")
def baseline() -> tuple[dict, str]:
    """What the shipped packs register and generate with no outside package installed."""
    listing = aios_cli(None, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    generated = aios_cli(None, *GENERATE)
    assert generated.returncode == 0, generated.stderr
    return shipped(json.loads(listing.stdout)), generated.stdout


def shipped(listing: dict) -> dict:
    """The first-party plugins' registrations and what `auto` resolves to, from a listing."""
    return {p["name"]: p["registered"] for p in listing["plugins"]
            if p["distribution"] in FIRST_PARTY}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_package_leaves_the_shipped_packs_working_exactly(fault, sources, baseline,
                                                                    tmp_path):
    pip_install(tmp_path, sources[fault])
    listing = aios_cli(tmp_path, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert shipped(data) == baseline[0]
    reported = {f["distribution"] for f in data["failures"]}
    if fault == "aios-explodes":  # it loads; it fails only when selected
        assert "explodes" in {p["name"] for p in data["plugins"]}
    else:
        assert fault in reported, data["failures"]
    # The same output as without the package: `auto` still picks the shipped head and sampler.
    generated = aios_cli(tmp_path, *GENERATE)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == baseline[1]


def test_with_every_outside_package_installed_the_default_generation_is_unchanged(site,
                                                                                   baseline):
    # the shout example registers below the shipped priorities, so it never captures `auto`
    generated = aios_cli(site, *GENERATE)
    assert (generated.returncode, generated.stdout) == (0, baseline[1]), generated.stderr
    data = json.loads(aios_cli(site, "plugins", "--json").stdout)
    assert shipped(data) == baseline[0]


def test_a_clash_refuses_only_the_clashing_names_and_names_both_packages(site):
    data = json.loads(aios_cli(site, "plugins", "--json").stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["aaa-clash"]["registered"] == {"sampler": ["intruder-own"]}
    assert "zzz-clash" in plugins and plugins["zzz-clash"]["registered"] == {}
    clashes = [f for f in data["failures"] if f["stage"] == "clash"]
    assert {(f["plugin"], f["error"].split(" refused")[0]) for f in clashes} == {
        ("aaa-clash", "sampler 'low-confidence'"), ("aaa-clash", "sampler 'ddim'"),
        ("zzz-clash", "sampler 'low-confidence'"), ("zzz-clash", "sampler 'ddim'")}
    assert all("plugin 'samplers' (aios-samplers" in f["error"] for f in clashes)
    text = aios_cli(site, "plugins").stdout
    assert ("plugin 'aaa-clash' (aios-clash-first 1.0): sampler 'ddim' refused: the name is "
            "taken by plugin 'samplers'") in text


def test_a_qualified_name_selects_the_refused_registration(site):
    result = aios_cli(site, "--set", "head.name=shout", "--set", "sampler.name=aaa-clash:ddim",
                      "generate", "x")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "aios: error: sampler 'aaa-clash:ddim' from package aios-clash-first 1.0 raised "
        "RuntimeError: the intruder ran")


def test_a_plugin_raising_during_generation_is_named_and_exits_1(site):
    argv = ("--set", "head.name=shout", "--set", "sampler.name=explodes", "generate", "hello")
    result = aios_cli(site, *argv)
    assert result.returncode == 1
    assert result.stderr.strip() == ("aios: error: sampler 'explodes' from package aios-explodes "
                                     "1.0 raised RuntimeError: diverged at step 1")
    debug = aios_cli(site, "--debug", *argv)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'raise RuntimeError("diverged at step 1")' in debug.stderr


@pytest.mark.parametrize(("name", "version"), [("future", f"{MAJOR}.{MINOR + 1}"),
                                               ("next-gen", f"{MAJOR + 1}.0")])
def test_selecting_a_plugin_skipped_for_its_contract_says_why_and_how_to_fix(site, name,
                                                                              version):
    result = aios_cli(site, "--set", f"sampler.name={name}", *GENERATE)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith(f"aios: error: --set sampler.name={name}: sampler.name: unknown "
                              f"sampler {name!r}") or f"unknown sampler {name!r}" in message
    assert "which was skipped at contract" in message
    assert f"implements contract {version}" in message
    assert "upgrade aios" in message and "Traceback" not in result.stderr


def test_open_memory_and_every_command_survive_plugins_that_exit(site, tmp_path):
    script = ("from aios.memory import open_memory\n"
              f"store = open_memory({str(tmp_path / 'm')!r}, 4)\n"
              "print('opened', store.count())\nstore.close()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "opened 0\n"), result.stderr
    failures = json.loads(aios_cli(site, "plugins", "--json").stdout)["failures"]
    errors = {f["plugin"]: f["error"] for f in failures}
    assert errors["exits"] == "SystemExit: 3"
    assert errors["interrupts"] == "KeyboardInterrupt: "
    assert errors["exits-hook"] == "SystemExit: bye"


def test_the_shout_example_generates_under_its_own_and_the_shipped_samplers(site):
    for sampler in ("left-to-right", "low-confidence", "mdlm"):
        result = aios_cli(site, "--set", "head.name=shout", "--set", f"sampler.name={sampler}",
                          "generate", "Hello, plugins!", "--seed", "3")
        assert (result.returncode, result.stdout) == (0, "HELLO, PLUGINS!\n"), result.stderr


def test_the_packages_per_kind_pass_the_conformance_kits(site, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(site))
    registry = Registry.discover()
    for kind, (_, entry, _) in KINDS.items():
        assert entry in registry.plugins, (kind, [str(f) for f in registry.failures])
    check_conditioner(registry.get("conditioner", "exclaim").factory)
    check_embedder(registry.get("embedder", "hashed").factory)
    check_quantizer(registry.get("quantizer", "outside").factory,  # not the process's cached
                    reference=registry.get("quantizer", "reference").factory)  # registry
    check_storage(registry.get("storage", "nested").factory, directory=tmp_path)
    kind = registry.get("adapter", "noop").factory()
    assert isinstance(kind, AdapterKind)
    assert isinstance(kind.evolve(None, "x", store=None, min_gain=0.1, max_base_loss=0.1,
                                  held_out=0.1), AdapterDecision)


def test_a_third_party_storage_backend_serves_memory_add_and_generate(site, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The lighthouse keeper feeds the cats at dawn.\n")
    store = tmp_path / "mem"
    options = ("--set", "memory.backend=nested", "--set", "memory.embedder=hashed")
    added = aios_cli(site, *options, "memory", "add", "--path", str(store), "--backend",
                     "nested", str(notes))
    assert added.returncode == 0, added.stderr
    assert not (store / "MANIFEST.json").exists()  # not the built-in backend's layout
    result = aios_cli(site, *options, "--set", "head.name=shout", "--set",
                      "sampler.name=left-to-right", "generate", "who feeds the cats",
                      "--memory", str(store), "--show-memory")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "WHO FEEDS THE CATS\n"
    assert "lighthouse keeper" in result.stderr


def test_recipes_and_evaluators_from_outside_run_through_train_and_eval(site, tmp_path):
    trained = aios_cli(site, "train", "outside", "--out", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    assert "loss    1.25" in trained.stdout
    scored = aios_cli(site, "eval", "outside", "--model", "m", "--data", "a", "--data", "b")
    assert scored.returncode == 0, scored.stderr
    assert "data    a,b" in scored.stdout


def test_an_adapter_kind_from_outside_climbs_the_evolve_ladder(site, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Some new text.\n")
    result = aios_cli(site, "--set", "evolve.adapter=noop", "--set",
                      f"evolve.adapters_dir={tmp_path / 'adapters'}", "evolve", str(notes),
                      "--name", "mine")
    assert result.returncode == 0, result.stderr
    assert "noop (level 9):" in result.stdout
    assert "adapter 'mine': rejected: a no-op adapter cannot lower perplexity" in result.stdout
