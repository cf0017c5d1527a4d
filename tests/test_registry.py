import pytest

from aios.errors import IncompatiblePluginError, PluginNotFoundError
from aios.hookspecs import CONTRACT_VERSION
from aios.registry import Registry, check_contract, precedence
from conftest import HalfwaySampler, NoisyHead, make_plugin, registering


def add(registry, module, name="p", distribution="dist-p", version="0.3"):
    return registry.add_plugin(module, name=name, distribution=distribution, version=version)


def test_registrations_are_kept_per_plugin_with_distribution_and_version():
    registry = Registry()
    hooks = registering("aios_register_samplers", ("halfway", HalfwaySampler, {}))
    info = add(registry, make_plugin(**hooks), name="mine", distribution="my-dist", version="2.1")
    assert (info.name, info.distribution, info.version) == ("mine", "my-dist", "2.1")
    assert info.registered == {"sampler": ["halfway"]}
    assert info.contract == CONTRACT_VERSION
    entry = registry.get("sampler", "halfway")
    assert entry.factory is HalfwaySampler
    assert entry.plugin == "mine"
    assert entry.summary == (
        "Continuous toy sampler: each step moves the state halfway to the prediction.")


def test_a_plugin_that_raises_while_registering_is_reported_and_skipped_as_a_whole():
    registry = Registry()

    def heads(register):
        register("fine", NoisyHead)

    def samplers(register):
        raise RuntimeError("boom")

    result = add(registry, make_plugin(aios_register_heads=heads, aios_register_samplers=samplers),
                 name="bad", distribution="bad-dist", version="9.9")
    assert result is None
    assert registry.names("head") == []
    [failure] = registry.failures
    assert (failure.plugin, failure.distribution, failure.version, failure.stage) == (
        "bad", "bad-dist", "9.9", "register")
    assert failure.error == "RuntimeError: boom"
    assert str(failure) == "plugin 'bad' (bad-dist 9.9) skipped at register: RuntimeError: boom"


def test_a_clash_refuses_only_the_clashing_registration_and_names_both_packages():
    registry = Registry()
    first = registering("aios_register_heads", ("noisy", NoisyHead, {}))
    second = registering("aios_register_heads", ("other", NoisyHead, {}), ("noisy", NoisyHead, {}))
    add(registry, make_plugin(**first), name="one", distribution="one-dist", version="1.0")
    info = add(registry, make_plugin(**second), name="two", distribution="two-dist", version="2.0")
    assert info.registered == {"head": ["other"]}  # the rest of the plugin loads
    assert registry.names("head") == ["noisy", "other"]
    assert registry.get("head", "noisy").plugin == "one"
    [failure] = registry.failures
    assert (failure.plugin, failure.stage) == ("two", "clash")
    assert str(failure) == (
        "plugin 'two' (two-dist 2.0): head 'noisy' refused: the name is taken by plugin 'one' "
        "(one-dist 1.0); the plugin's other registrations load. Select this one as 'two:noisy' "
        "(and the other as 'one:noisy'), or rename it")


def test_qualified_names_select_either_side_of_a_clash():
    registry = Registry()
    add(registry, make_plugin(**registering("aios_register_heads", ("noisy", NoisyHead, {}))),
        name="one", distribution="one-dist")
    add(registry, make_plugin(**registering("aios_register_heads", ("noisy", HalfwaySampler, {}))),
        name="two", distribution="two-dist")
    loser = registry.get("head", "two:noisy")
    assert (loser.factory, loser.plugin) == (HalfwaySampler, "two")
    assert registry.get("head", "one:noisy") is registry.get("head", "noisy")
    assert registry.selector(loser) == "two:noisy"
    assert registry.selector(registry.get("head", "noisy")) == "noisy"
    assert registry.origin(loser) == "head 'two:noisy' from package two-dist 0.3"
    with pytest.raises(PluginNotFoundError, match="did you mean 'two:noisy'"):
        registry.get("head", "tow:noisy")


@pytest.mark.parametrize("order", [("aios-samplers", "zz-clash"), ("zz-clash", "aios-samplers")])
def test_a_first_party_name_is_never_displaced_whatever_the_order(order):
    registry = Registry()
    for distribution in order:
        hooks = registering("aios_register_samplers", ("ddim", HalfwaySampler, {}),
                            (distribution.replace("aios-", ""), HalfwaySampler, {}))
        add(registry, make_plugin(**hooks), name=distribution, distribution=distribution)
    assert registry.get("sampler", "ddim").plugin == "aios-samplers"
    assert registry.names("sampler") == ["ddim", "samplers", "zz-clash"]
    assert registry.plugins["aios-samplers"].registered == {"sampler": ["ddim", "samplers"]}
    assert registry.plugins["zz-clash"].registered == {"sampler": ["zz-clash"]}
    [failure] = registry.failures
    assert (failure.plugin, failure.stage, failure.offers) == ("zz-clash", "clash",
                                                               (("sampler", "ddim"),))


def test_precedence_puts_the_core_then_first_party_then_others_by_distribution():
    assert sorted(["zed", "aios-text", "abc", "aios"], key=precedence) == [
        "aios", "aios-text", "abc", "zed"]


@pytest.mark.parametrize("exit_like", [SystemExit(3), KeyboardInterrupt()])
def test_a_plugin_exiting_in_a_hook_is_reported_and_skipped(exit_like):
    registry = Registry()

    def samplers(register):
        raise exit_like

    assert add(registry, make_plugin(aios_register_samplers=samplers), name="quits") is None
    [failure] = registry.failures
    assert (failure.plugin, failure.stage) == ("quits", "register")
    assert failure.error.startswith(type(exit_like).__name__)


def test_diagnostics_survive_a_plugin_that_exits():
    registry = Registry()

    def diagnostics(report):
        raise SystemExit(1)

    add(registry, make_plugin(aios_diagnostics=diagnostics), name="quits")
    assert registry.diagnostics() == {"quits": [("error", "SystemExit: 1")]}


def test_selecting_a_name_of_a_skipped_plugin_says_why_it_was_skipped():
    registry = Registry()
    hooks = registering("aios_register_samplers", ("future", HalfwaySampler, {}))
    add(registry, make_plugin(contract="1.99", **hooks), name="newer",
        distribution="newer-dist", version="4.0")
    with pytest.raises(PluginNotFoundError) as caught:
        registry.get("sampler", "future")
    message = str(caught.value)
    assert "it comes from plugin 'newer' (newer-dist 4.0), which was skipped at contract" in message
    assert "implements contract 1.99" in message and "upgrade aios" in message


def test_the_same_name_in_two_kinds_is_no_clash():
    registry = Registry()
    hooks = registering("aios_register_heads", ("same", NoisyHead, {}))
    hooks |= registering("aios_register_samplers", ("same", HalfwaySampler, {}))
    add(registry, make_plugin(**hooks))
    assert registry.names("head") == registry.names("sampler") == ["same"]


def test_two_plugins_under_one_entry_point_name_keep_the_first():
    registry = Registry()
    add(registry, make_plugin(), name="twin")
    assert add(registry, make_plugin(), name="twin") is None
    assert registry.failures[0].stage == "duplicate"


@pytest.mark.parametrize("bad_name", ["Upper", "has space", "", "-lead"])
def test_invalid_names_are_refused(bad_name):
    registry = Registry()
    add(registry, make_plugin(**registering("aios_register_heads", (bad_name, NoisyHead, {}))))
    [failure] = registry.failures
    assert "is invalid: use lower case letters, digits and - _ . +" in failure.error


def test_a_factory_that_is_not_callable_is_refused():
    registry = Registry()
    add(registry, make_plugin(**registering("aios_register_heads", ("x", 42, {}))))
    assert registry.failures[0].error == "TypeError: head 'x': factory 42 is not callable"


def test_an_unknown_family_is_refused():
    registry = Registry()
    add(registry, make_plugin(**registering("aios_register_heads",
                                            ("x", NoisyHead, {"family": "fuzzy"}))))
    assert "family 'fuzzy' is not one of" in registry.failures[0].error


def test_a_hook_the_contract_does_not_know_is_refused():
    registry = Registry()
    add(registry, make_plugin(aios_register_wizards=lambda register: None), name="odd")
    [failure] = registry.failures
    assert failure.stage == "register"
    assert "aios_register_wizards" in failure.error


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ("2.0", "plugin 'p' (dist-p) implements contract 2.0 but this aios core implements "
                f"{CONTRACT_VERSION}; install a release of dist-p built for contract 1.x (at most "
                f"{CONTRACT_VERSION}), or upgrade aios"),
        ("1.99", "implements contract 1.99 but this aios core implements"),
        ("0.9", "implements contract 0.9 but this aios core implements"),
        ("one", "declares contract version 'one', which is not MAJOR.MINOR"),
        (None, "declares no contract version; add "
               f"`AIOS_CONTRACT_VERSION = \"{CONTRACT_VERSION}\"`"),
    ],
)
def test_an_incompatible_contract_is_refused_naming_the_plugin_and_both_versions(declared, message):
    registry = Registry()
    assert add(registry, make_plugin(contract=declared)) is None
    [failure] = registry.failures
    assert failure.stage == "contract"
    assert message in failure.error
    with pytest.raises(IncompatiblePluginError):
        check_contract("p", "dist-p", declared)


def test_an_older_minor_contract_is_accepted():
    assert check_contract("p", "d", "1.0") == "1.0"


def test_unknown_names_get_did_you_mean_suggestions(toys):
    with pytest.raises(PluginNotFoundError) as caught:
        toys.get("sampler", "halfwy")
    assert caught.value.suggestions == ["halfway"]
    assert str(caught.value) == (
        "unknown sampler 'halfwy'; did you mean 'halfway'? Installed samplers: halfway, still.")
    assert caught.value.exit_code == 2


def test_a_kind_with_nothing_installed_says_which_pack_to_install():
    with pytest.raises(PluginNotFoundError, match=r"no head plugin is installed\. Install a "
                                                  r"modality pack: `pip install aios-text`"):
        Registry().get("head", "text")


def test_auto_picks_the_highest_priority_and_breaks_ties_by_name(toys):
    assert toys.best("sampler").name == "still"
    assert toys.best("sampler", family="continuous").name == "halfway"
    assert toys.best("storage") is None
    registry = Registry()
    add(registry, make_plugin(**registering("aios_register_storage",
                                            ("zeta", object, {}), ("alpha", object, {}))))
    assert registry.best("storage").name == "alpha"


def test_an_unknown_kind_is_a_programming_error(toys):
    with pytest.raises(ValueError, match="unknown plugin kind 'widget'"):
        toys.names("widget")


def test_diagnostics_are_collected_per_plugin_and_a_raising_one_reports_its_error():
    registry = Registry()

    def good(report):
        report("answer", 42)

    def bad(report):
        raise OSError("no disk")

    add(registry, make_plugin(aios_diagnostics=good), name="good")
    add(registry, make_plugin(aios_diagnostics=bad), name="bad")
    facts = registry.diagnostics()
    assert facts["good"] == [("answer", 42)]
    assert facts["bad"] == [("error", "OSError: no disk")]


def test_discovery_finds_the_installed_core_first():
    registry = Registry.discover()
    assert next(iter(registry.plugins)) == "core"
    assert registry.plugins["core"].distribution == "aios"
    assert not [f for f in registry.failures if f.plugin == "core"]


def test_a_hook_function_without_the_hookimpl_marker_is_refused_not_ignored():
    registry = Registry()
    module = make_plugin()
    module.aios_register_heads = lambda register: register("x", NoisyHead)
    assert add(registry, module, name="forgot") is None
    assert registry.failures[0].error == (
        "TypeError: aios_register_heads is not marked as a hook; decorate it with @aios.hookimpl")


def test_best_can_choose_among_the_heads_of_one_modality(toys):
    class Other:
        modality = "picture"

    add(toys, make_plugin(**registering("aios_register_heads",
                                        ("pic", Other, {"family": "continuous"}))))
    assert toys.names("head", modality="picture") == ["pic"]
    assert toys.best("head", modality="toy").name == "noisy"
    assert toys.best("head", modality="sound") is None
