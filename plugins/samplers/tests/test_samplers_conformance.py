"""Every sampler of the pack keeps the plugin contract (`aios.testing.check_sampler`)."""

import pytest
from aios_samplers.plugin import SAMPLERS

from aios.testing import check_sampler


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_sampler_keeps_the_contract(name):
    factory, family = SAMPLERS[name]
    check_sampler(factory)
    assert factory().family == family
