"""docs/plugins.md shows the shout example whole and ends with a kit test that really runs."""

import re
import sys
from pathlib import Path

import aios.testing
from aios import protocols
from aios.registry import KINDS

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "examples" / "aios-shout"


def block(marker: str) -> str:
    part = GUIDE.read_text().split(f"<!-- {marker} -->")[1]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def test_the_guide_shows_the_example_file_whole():
    assert block("shout-example") == (EXAMPLE / "aios_shout.py").read_text()
    assert (EXAMPLE / "pyproject.toml").read_text() in GUIDE.read_text()


def test_the_guide_ends_with_the_kit_test_and_it_passes(monkeypatch):
    text = GUIDE.read_text()
    code = block("kit-test")
    assert text.rstrip().endswith(code.rstrip() + "\n```")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)
    namespace["test_shout_keeps_the_contract"]()
    sys.modules.pop("aios_shout", None)


def test_the_guide_names_a_protocol_and_hook_for_every_kind_and_every_kit():
    text = GUIDE.read_text()
    table = text.split("## Kinds")[1].split("##")[0]
    for kind in KINDS:
        assert f"\n| {kind} |" in table, kind
    for protocol in re.findall(r"`(\w+)`", table):
        if protocol[0].isupper():
            assert hasattr(protocols, protocol), protocol
    for kit in (n for n in aios.testing.__all__ if n.startswith("check_")):
        assert f"`{kit}`" in text, kit
