"""The README's first screen shows what the shipped models really make: regenerating the
examples with their fixed seeds gives the files in docs/examples/ and the same README block."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def examples():
    spec = importlib.util.spec_from_file_location("examples", ROOT / "scripts" / "examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["examples"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["examples"]


@pytest.fixture(scope="module")
def fresh(examples, tmp_path_factory):
    """Every example regenerated into a temporary folder, as `scripts/examples.py` does."""
    directory = tmp_path_factory.mktemp("examples")
    for example in examples.EXAMPLES:
        examples.generate(example, directory)
    return directory


def test_the_readme_block_is_what_the_models_make_now(examples, fresh):
    readme = (ROOT / "README.md").read_text()
    assert examples.readme_block(readme) == examples.block(fresh), (
        "the README's examples are stale: run `python scripts/examples.py` and commit")


def test_the_example_files_are_what_the_models_make_now(examples, fresh):
    assert examples.differences(fresh, ROOT / examples.EXAMPLES_DIR) == []


def test_every_modality_has_an_example_and_the_readme_links_its_files(examples):
    assert {e.modality for e in examples.EXAMPLES} == {"text", "image", "audio"}
    block = examples.readme_block((ROOT / "README.md").read_text())
    for name in ("image-sneaker.png", "audio-seven.wav", "audio-seven.png"):
        assert f"](docs/examples/{name})" in block
        assert (ROOT / "docs" / "examples" / name).stat().st_size > 1000


def test_a_changed_output_is_caught(examples, fresh, tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    for path in fresh.iterdir():
        (kept / path.name).write_bytes(path.read_bytes())
    (kept / "text-once.txt").write_text("Once upon a time there was a test\n")
    assert examples.differences(fresh, kept) == [f"{kept / 'text-once.txt'}: the text "
                                                 "differs"]
