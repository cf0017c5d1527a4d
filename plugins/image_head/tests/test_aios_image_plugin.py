import aios_image

from aios.hookspecs import CONTRACT_VERSION
from aios.testing import loaded_plugin


def test_the_pack_loads_through_its_entry_point_with_its_version():
    info = loaded_plugin("image")
    assert (info.distribution, info.version) == ("aios-image", aios_image.__version__)
    assert info.contract == CONTRACT_VERSION
    assert info.module == "aios_image.plugin"


def test_head_auto_without_a_modality_stays_on_the_text_head():
    from aios.registry import default_registry

    assert default_registry().best("head").name == "text"
    assert default_registry().best("head", modality="image").name == "image"
