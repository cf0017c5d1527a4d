import aios_audio

from aios.hookspecs import CONTRACT_VERSION
from aios.testing import loaded_plugin


def test_the_pack_loads_through_its_entry_point_with_its_version():
    info = loaded_plugin("audio")
    assert (info.distribution, info.version) == ("aios-audio", aios_audio.__version__)
    assert info.contract == CONTRACT_VERSION
    assert info.module == "aios_audio.plugin"
