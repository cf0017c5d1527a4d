import inspect
import re
from pathlib import Path

import pluggy

from aios import hookspecs, protocols
from aios.protocols import GenerationRequest
from aios.registry import KINDS

REPO = Path(__file__).resolve().parents[1]


def test_every_plugin_kind_has_a_registration_hook_taking_register():
    assert set(KINDS) == {"head", "sampler", "conditioner", "storage", "quantizer", "recipe",
                          "evaluator", "embedder", "adapter"}
    for hook_name in hookspecs.KIND_HOOKS.values():
        spec = getattr(hookspecs, hook_name)
        assert list(inspect.signature(spec).parameters) == ["register"]


def test_every_hook_spec_is_documented_for_a_third_party_author():
    manager = pluggy.PluginManager("aios")
    manager.add_hookspecs(hookspecs)
    names = [n for n in dir(manager.hook) if n.startswith("aios_")]
    assert sorted(names) == sorted([*hookspecs.KIND_HOOKS.values(), "aios_diagnostics"])
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and 15 <= len(doc.split()) <= 60, name  # short: the Protocols carry detail


def test_every_kind_hook_names_the_protocol_it_builds_and_that_protocol_exists():
    for kind, hook_name in hookspecs.KIND_HOOKS.items():
        doc = inspect.getdoc(getattr(hookspecs, hook_name))
        named = re.findall(r"`aios\.protocols\.(\w+)`", doc)
        assert named, kind
        for protocol in named:
            assert hasattr(protocols, protocol), (kind, protocol)


def test_the_contract_version_is_major_dot_minor():
    assert re.fullmatch(r"\d+\.\d+", hookspecs.CONTRACT_VERSION)


def test_requests_are_immutable_and_grow_by_copy():
    request = GenerationRequest(prompt="p", modality="text", num_steps=4)
    richer = request.with_context("memory").with_conditions([1.0])
    assert request.context == () and request.conditions == ()
    assert richer.context == ("memory",) and richer.conditions == ([1.0],)
