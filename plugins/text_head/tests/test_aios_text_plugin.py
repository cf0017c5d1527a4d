import aios_text

from aios.hookspecs import CONTRACT_VERSION
from aios.testing import loaded_plugin


def test_the_pack_loads_through_its_entry_point_with_its_version():
    info = loaded_plugin("text")
    assert (info.distribution, info.version) == ("aios-text", aios_text.__version__)
    assert info.contract == CONTRACT_VERSION
    assert info.module == "aios_text.plugin"


def test_the_pack_registers_minilm_above_the_text_backbone_embedder_when_installed():
    from aios.registry import default_registry

    info = loaded_plugin("text")
    assert info.registered["embedder"] == ["minilm", "text-backbone"]
    assert default_registry().best("embedder").name == "minilm"
