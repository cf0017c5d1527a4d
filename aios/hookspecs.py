"""The aios plugin contract: one hook spec per kind of plugin.

This file is the documentation of the contract. A plugin is a Python module named by an entry
point in the group ``aios``::

    # pyproject.toml of your package
    [project.entry-points.aios]
    my-sampler = "my_package.plugin"

The module must declare which version of this contract it implements, and implement any of the
hooks below with the `hookimpl` marker::

    import aios

    AIOS_CONTRACT_VERSION = "1.4"

    @aios.hookimpl
    def aios_register_samplers(register):
        register("my-sampler", MySampler, family="discrete", summary="what it does")

Hooks are *registration* hooks: each receives a ``register`` callable and calls it once per thing
the plugin offers. Nothing is built at registration time; the core calls the factory later, only
for what the configuration selects.

``register(name, factory, *, summary="", priority=0, family=None)``

- ``name``: unique within its kind across all installed plugins; lower case letters, digits and
  ``- _ . +``. This is the name a user writes in the YAML config (``sampler: {name: ...}``).
- ``factory``: a callable (usually the class) that builds the object. Its keyword parameters are
  the plugin's options: the config keys of its section other than the core's own keys are passed
  to it, and a key that is not a parameter (and no ``**kwargs``) is reported to the user as a
  config error, with the parameter names as suggestions. Annotate parameters with ``int``,
  ``float``, ``str`` or ``bool`` to have the config type-checked.
- ``summary``: one line shown by ``aios plugins``; defaults to the factory's first docstring line.
- ``priority``: how ``auto`` chooses: the highest priority of a kind wins (a native backend
  registers above its reference twin). Ties break by name. The shipped defaults (what ``auto``
  picks) register at 0 or above; a demonstration plugin registers below 0 so it never
  captures ``auto``.
- ``family``: for heads and samplers, ``"discrete"`` (masked tokens) or ``"continuous"``
  (Gaussian noise). The engine refuses a sampler whose family differs from the head's.

Versioning: ``CONTRACT_VERSION`` is ``MAJOR.MINOR``. A plugin is accepted when its major version
equals the core's and its minor version is not newer. Otherwise it is refused with a message
naming the plugin and both versions, and the rest of the program keeps running.

A plugin that raises (or calls ``sys.exit``) while importing or registering is reported by
``aios plugins`` and ``aios doctor`` (distribution, version, the exception) and skipped; the
other plugins still load. A name another plugin holds is refused for that one registration
only: the core and the first-party packs keep theirs, third parties yield to each other by
distribution name, and ``plugin:name`` selects any of them (``sampler: {name: shout:ddim}``).

What each factory is called with and must return is in `aios.protocols`, one Protocol per
kind; `aios.testing` checks a factory against it (``check_head``, ``check_sampler``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

#: The version of this contract. Bump MINOR for additions, MAJOR for changes that break plugins.
CONTRACT_VERSION = "1.4"

#: The module attribute through which a plugin declares the contract version it implements.
CONTRACT_ATTRIBUTE = "AIOS_CONTRACT_VERSION"

#: The entry-point group where plugins are discovered.
ENTRY_POINT_GROUP = "aios"

hookspec = pluggy.HookspecMarker("aios")
hookimpl = pluggy.HookimplMarker("aios")

#: The type of the ``register`` argument every registration hook receives.
Register = Callable[..., None]

#: Plugin kinds, in the order `aios plugins` shows them, mapped to their registration hook.
KIND_HOOKS = {
    "head": "aios_register_heads",
    "sampler": "aios_register_samplers",
    "conditioner": "aios_register_conditioners",
    "storage": "aios_register_storage",
    "quantizer": "aios_register_quantizers",
    "recipe": "aios_register_recipes",
    "evaluator": "aios_register_evaluators",
    "embedder": "aios_register_embedders",
    "adapter": "aios_register_adapters",
}


@hookspec
def aios_register_heads(register: Register) -> None:
    """Register modality heads: ``register(name, HeadClass, family=...)``.

    ``factory(**options)`` (the config's ``head`` section) returns an `aios.protocols.Head`,
    optionally with its extras (`aios.protocols.WritesFiles`, ``DrawsGrids``,
    ``CountsParameters``, ``Explains``). Declare ``modality`` on the class for ``head: auto``.
    Contract 1.4: ``runtimes`` and a ``runtime`` parameter (see `aios.protocols.Head`).
    """


@hookspec
def aios_register_samplers(register: Register) -> None:
    """Register samplers: ``register(name, SamplerClass, family="discrete" | "continuous")``.

    ``factory(**options)`` (the config's ``sampler`` section; ``steps`` goes to ``sample``)
    returns an `aios.protocols.Sampler` that owns the denoising loop over a
    `aios.protocols.MaskedState` or `aios.protocols.GaussianState`.
    """


@hookspec
def aios_register_conditioners(register: Register) -> None:
    """Register conditioners, which add context or conditions to a request before sampling.

    ``factory(**options)`` (one entry of the config's ``conditioners`` list) returns an
    `aios.protocols.Conditioner`; they run in the order the config lists them.
    """


@hookspec
def aios_register_storage(register: Register) -> None:
    """Register memory storage backends.

    The factory is an `aios.protocols.StorageFactory`: ``factory(path, *, dim, read_only,
    retention, **options)`` returning an `aios.protocols.MemoryStore`. A faster backend
    registers with a higher ``priority`` than the reference one.
    """


@hookspec
def aios_register_quantizers(register: Register) -> None:
    """Register weight quantizers.

    ``factory(**options)`` (``bits``, ``group_size``, ``symmetric``, ...) returns an
    `aios.protocols.Quantizer`; subclass `aios.quant.ReferenceQuantizer` to replace only its
    kernels. Every backend must produce identical packed bytes.
    """


@hookspec
def aios_register_recipes(register: Register) -> None:
    """Register training recipes for ``aios train NAME`` (added in contract 1.1).

    The factory is an `aios.protocols.RecipeFactory`: calling it trains and returns the metrics
    that the command prints.
    """


@hookspec
def aios_register_evaluators(register: Register) -> None:
    """Register evaluations for ``aios eval NAME`` (added in contract 1.2).

    The factory is an `aios.protocols.EvaluatorFactory`: calling it scores a model and returns
    the metrics that the command prints.
    """


@hookspec
def aios_register_embedders(register: Register) -> None:
    """Register text embedders for the memory (added in contract 1.2).

    ``factory()`` returns an `aios.protocols.Embedder`; ``memory.embedder: auto`` picks the
    highest ``priority``. A missing optional package raises `aios.errors.AiosError` naming it.
    """


@hookspec
def aios_register_adapters(register: Register) -> None:
    """Register adapter kinds, the levels of self-evolution (added in contract 1.3).

    ``factory(**options)`` returns an `aios.protocols.AdapterKind`; register it with
    ``priority=-level`` so ``evolve.adapter: auto`` tries the cheapest level first.
    """


@hookspec
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    """Report facts for ``aios doctor``: ``report(label, value)``, e.g. ``("SIMD", "avx2")``.

    Keep it fast and side-effect free; an exception here is shown as a problem of the plugin.
    """
