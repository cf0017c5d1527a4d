"""The audio head keeps the plugin contract (`aios.testing.check_head`), extras included."""

from aios.registry import default_registry
from aios.testing import check_head


def test_the_audio_head_keeps_the_contract():
    passed = check_head(default_registry().get("head", "audio").factory, prompt="yes")
    assert "extras" in passed
