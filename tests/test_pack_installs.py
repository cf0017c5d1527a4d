"""Real pip installs: aios-image works without aios-audio, and removing one pack leaves the
others working. Opt-in (it builds wheels and fills a fresh virtual environment, a minute or
two): set AIOS_PIP_TESTS=1. Third-party wheels come from PyPI (or pip's cache / find-links);
torch is left out on purpose, since generating an image or a sound never imports it."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("AIOS_PIP_TESTS") != "1",
                                reason="real pip installs are opt-in: AIOS_PIP_TESTS=1")

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ["numpy", "pluggy", "pyarrow", "pyyaml", "safetensors", "tqdm", "matplotlib",
           "array-api-compat"]


def run(*argv, cwd=None, check=True):
    # No PYTHONPATH: the environment must see only what pip installed into it (a source tree on
    # the path would even make pip skip the install, as "already satisfied").
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                            check=False, env=env)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(map(str, argv))} failed:\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


@pytest.fixture(scope="module")
def venv():
    """A fresh environment (no system site-packages) with the core, the samplers and the
    image pack installed from wheels built from this checkout. (Its own temporary directory:
    pytest prunes old base directories while other sessions run.)"""
    with tempfile.TemporaryDirectory(prefix="aios-installs-") as name:
        yield _build_venv(Path(name))


def _build_venv(base: Path):
    wheels = base / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", wheels, ROOT, ROOT / "plugins/samplers", ROOT / "plugins/image_head",
        ROOT / "plugins/audio_head")
    env = base / "venv"
    run(sys.executable, "-m", "venv", env)
    pip = [env / "bin/python", "-m", "pip", "install", "--quiet"]
    run(*pip, *RUNTIME)
    run(*pip, "--no-deps", *wheel(wheels, "aios"), *wheel(wheels, "aios_samplers"),
        *wheel(wheels, "aios_image"))
    return env, wheels, base


def wheel(directory: Path, name: str) -> list[Path]:
    found = sorted(directory.glob(f"{name}-*.whl"))
    assert len(found) == 1, found
    return found


def aios(env, *argv, cwd):
    return run(env / "bin/aios", *argv, cwd=cwd, check=False)


def test_the_image_pack_alone_generates_an_image(venv):
    env, _, base = venv
    listing = aios(env, "plugins", "--verbose", cwd=base)
    assert listing.returncode == 0, listing.stderr
    assert "aios-image" in listing.stdout and "aios-audio" not in listing.stdout
    result = aios(env, "generate", "--modality", "image", "sneaker", "--steps", "3", "--out",
                  "s.png", cwd=base)
    assert result.returncode == 0, result.stderr
    assert (base / "s.png").stat().st_size > 0


def test_adding_then_removing_the_audio_pack_leaves_the_image_pack_working(venv):
    env, wheels, base = venv
    run(env / "bin/python", "-m", "pip", "install", "--quiet", "scipy")
    run(env / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps",
        *wheel(wheels, "aios_audio"))
    sound = aios(env, "generate", "--modality", "audio", "seven", "--steps", "3", "--out",
                 "seven.wav", cwd=base)
    assert sound.returncode == 0, sound.stderr
    assert (base / "seven.wav").is_file() and (base / "seven.png").is_file()
    run(env / "bin/python", "-m", "pip", "uninstall", "--quiet", "-y", "aios-audio")
    image = aios(env, "generate", "--modality", "image", "bag", "--steps", "3", "--out",
                 "b.png", cwd=base)
    assert image.returncode == 0, image.stderr
    gone = aios(env, "generate", "--modality", "audio", "seven", "--steps", "3", cwd=base)
    assert gone.returncode == 2, gone.stderr  # a user mistake: no installed pack makes audio
    assert "no installed pack generates 'audio'; installed modalities: image" in gone.stderr


def test_removing_the_image_pack_leaves_the_audio_pack_working(venv):
    env, wheels, base = venv
    run(env / "bin/python", "-m", "pip", "install", "--quiet", "scipy")
    run(env / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps",
        *wheel(wheels, "aios_audio"))
    run(env / "bin/python", "-m", "pip", "uninstall", "--quiet", "-y", "aios-image")
    listing = aios(env, "plugins", cwd=base)
    assert "aios-image" not in listing.stdout and "aios-audio" in listing.stdout
    sound = aios(env, "generate", "--modality", "audio", "no", "--steps", "3", "--out",
                 "no.wav", cwd=base)
    assert sound.returncode == 0, sound.stderr
