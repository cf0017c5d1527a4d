"""`pip install aios` brings no torch: a fresh environment holding only the core, aios-samplers and
the third-party example aios-shout generates through the engine, and torch is not importable there.

Opt-in like tests/test_pack_installs.py (it fills a fresh virtual environment from PyPI or pip's
cache, about a minute): set AIOS_PIP_TESTS=1. `scripts/dev test` runs it.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("AIOS_PIP_TESTS") != "1",
                                reason="real pip installs are opt-in: AIOS_PIP_TESTS=1")

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib")


def run(*argv, cwd=None):
    # No PYTHONPATH: the environment must see only what pip installed into it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                            check=False, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def core_env():
    with tempfile.TemporaryDirectory(prefix="aios-core-") as name:
        base = Path(name)
        wheels = base / "wheels"
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
            "-w", wheels, ROOT, ROOT / "plugins/samplers", ROOT / "examples/aios-shout")
        env = base / "venv"
        run(sys.executable, "-m", "venv", env)
        # With their dependencies, as a user's `pip install aios aios-samplers` would resolve.
        run(env / "bin/python", "-m", "pip", "install", "--quiet", *sorted(wheels.glob("*.whl")))
        yield env, base


def test_the_core_installs_without_torch_or_matplotlib(core_env):
    env, _ = core_env
    listed = run(env / "bin/python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert {"aios", "aios-samplers", "aios-shout"} <= names
    assert not names & set(HEAVY)


def test_a_plugin_generates_through_the_engine_without_torch(core_env):
    env, base = core_env
    script = textwrap.dedent("""\
        import importlib.util, sys
        import aios
        from aios import ArrowEngine, load_config, default_registry
        registry = default_registry()
        config = load_config(overrides=["head.name=shout", "sampler.name=left-to-right",
                                        "sampler.steps=3"], registry=registry)
        with ArrowEngine.from_config(config, registry=registry) as engine:
            print(engine.diffuse("hello core"))
        assert "ddim" in registry.names("sampler")  # aios-samplers' NumPy samplers
        print([m for m in ("torch", "matplotlib")
               if importlib.util.find_spec(m) or m in sys.modules])
        """)
    out = run(env / "bin/python", "-c", script, cwd=base).stdout.splitlines()
    assert out[0] == "HELLO CORE"
    assert out[-1] == "[]"


def test_the_cli_generates_and_diagnoses_without_torch(core_env):
    env, base = core_env
    result = run(env / "bin/aios", "--set", "head.name=shout", "--set",
                 "sampler.name=left-to-right", "generate", "no gpu stack", cwd=base)
    assert result.stdout == "NO GPU STACK\n"
    doctor = run(env / "bin/aios", "plugins", cwd=base).stdout
    assert "aios-samplers" in doctor and "aios-shout" in doctor
