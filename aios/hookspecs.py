"""The aios plugin contract: one hook spec per kind of plugin.

This file is the documentation of the contract. A plugin is a Python module named by an entry
point in the group ``aios``::

    # pyproject.toml of your package
    [project.entry-points.aios]
    my-sampler = "my_package.plugin"

The module must declare which version of this contract it implements, and implement any of the
hooks below with the `hookimpl` marker::

    import aios

    AIOS_CONTRACT_VERSION = "1.3"

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
  registers above its reference twin). Ties break by name.
- ``family``: for heads and samplers, ``"discrete"`` (masked tokens) or ``"continuous"``
  (Gaussian noise). The engine refuses a sampler whose family differs from the head's.

Versioning: ``CONTRACT_VERSION`` is ``MAJOR.MINOR``. A plugin is accepted when its major version
equals the core's and its minor version is not newer. Otherwise it is refused with a message
naming the plugin and both versions, and the rest of the program keeps running.

A plugin that raises while importing or registering, or registers a name that is already taken,
is reported by ``aios plugins`` and ``aios doctor`` (distribution, version, the exception) and
skipped as a whole; the other plugins still load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

#: The version of this contract. Bump MINOR for additions, MAJOR for changes that break plugins.
CONTRACT_VERSION = "1.3"

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
    """Register modality heads (text, image, audio, ...).

    The factory is called as ``factory(**options)`` with the options of the config's ``head``
    section and must return an object with the `aios.protocols.Head` interface:

    - ``modality`` (str): what ``diffuse(..., modality=...)`` selects, e.g. ``"text"``.
    - ``family`` (str): ``"discrete"`` or ``"continuous"``; pass the same as ``family=`` to
      ``register``.
    - ``initial_state(request, rng)``: the sampler's starting state (all masks, or noise drawn
      from the NumPy ``rng`` so that a seed reproduces the output).
    - ``denoise(state, t, request)``: one model evaluation; the sampler decides what to do with
      it. Apply ``request.guidance_scale`` (classifier-free guidance) here if supported.
    - ``decode(state, request)``: the user-facing result (``str``, image array, waveform).

    A head must not depend on a particular sampler: any sampler of its family must work.

    ``head: auto`` with a requested modality (``--modality image``) picks the best head whose
    factory has that ``modality`` as a class attribute, so declare it on the class. Heads whose
    output is not text may also offer (``aios generate`` and ``aios plugins --verbose`` use
    them, see `aios.cli_media`): ``write(output, path, rows=None) -> list[Path]`` and
    ``output_suffix`` (the files ``generate`` writes), ``grid_rows(prompt)`` (``--grid``) and
    ``parameter_counts() -> {"backbone": n, "head": m}``.

    The state and prediction formats every sampler of a family understands
    (`aios.protocols`):

    - continuous heads: ``initial_state`` returns a ``GaussianState(x, schedule, prediction)``
      (``x`` standard normal noise, ``schedule`` the head's `aios.schedules.NoiseSchedule`,
      ``prediction`` ``"epsilon"``, ``"x0"`` or ``"v"``); ``denoise(state, t, request)`` gets a
      fractional training timestep ``t`` and returns an array shaped like ``state.x``.
    - discrete heads: ``initial_state`` returns a ``MaskedState(tokens, mask_id, eos_id,
      on_prefix)`` (``mask_id`` at every position to generate); ``denoise`` gets ``t`` in
      ``[0, 1]`` and returns logits ``(batch, length, vocab)``; it may be asked about a subset
      of the rows (``state.rows`` says which). ``on_prefix(tokens, length)``, if set, is the
      prefix-cache hook: block-wise samplers call it when positions ``[:length]`` are final.
    - classifier-free guidance: return ``Guided(conditional, unconditional,
      request.guidance_scale)`` from ``denoise`` and the sampler combines the two.
    """


@hookspec
def aios_register_samplers(register: Register) -> None:
    """Register samplers; pass ``family="discrete"`` or ``family="continuous"``.

    The factory is called as ``factory(**options)`` with the options of the config's ``sampler``
    section (``steps`` is the core's and is passed to ``sample`` instead). It must return an
    object with the `aios.protocols.Sampler` interface: ``family`` and
    ``sample(denoise, state, *, num_steps, rng, callback=None) -> state``, where
    ``denoise(state, t)`` queries the head's model and ``callback(step, num_steps, state)`` is
    called after every step (progress bars, streaming). The sampler owns the loop, so caching
    and block-wise decoding are its business.

    A continuous sampler receives and returns an `aios.protocols.GaussianState`, a discrete one
    an `aios.protocols.MaskedState` (see `aios_register_heads` for what the head puts in them).
    Handle a `aios.protocols.Guided` result of ``denoise`` by combining its branches. The
    samplers of the ``aios-samplers`` pack also offer a step-level interface,
    ``set_timesteps(...)`` then ``step(model_output, index, sample_or_state, rng)`` per model
    evaluation, on which their ``sample`` is built.
    """


@hookspec
def aios_register_conditioners(register: Register) -> None:
    """Register conditioners, which add guidance to a request before sampling.

    The factory is called as ``factory(**options)`` with one entry of the config's
    ``conditioners`` list (without its ``name``). The object must provide
    ``condition(request, context) -> request`` (`aios.protocols.Conditioner`): it returns a new
    `aios.protocols.GenerationRequest` (use ``with_context`` / ``with_conditions``) and may use
    ``context.storage`` (the configured memory store, or None) and ``context.head``.
    Conditioners run in the order the config lists them.

    A conditioner that reads the memory sets the class attribute ``retrieves_memory = True``:
    it then receives ``context.embedder`` (the config's ``memory.embedder``, built on first
    use; None for other conditioners), and ``diffuse(..., memory_guided=False)`` skips it. The
    core's ``memory`` conditioner puts `aios.memory.conditioner.Passage` objects (``text``,
    ``score``, ``source``, ``id``) into ``request.context``, best first; a head that reads
    context should accept them as well as plain strings.
    """


@hookspec
def aios_register_storage(register: Register) -> None:
    """Register memory storage backends.

    The factory is called as ``factory(path=..., **options)`` where ``path`` is a directory
    (created if new) and the options come from the config's ``memory`` section. It returns an
    `aios.protocols.MemoryStore`. A fast backend should register with a higher ``priority`` than
    the reference one so ``backend: auto`` prefers it.
    """


@hookspec
def aios_register_quantizers(register: Register) -> None:
    """Register weight quantizers.

    The factory is called as ``factory(**options)`` with the options of the config's
    ``quantizer`` section (and of ``aios quantize``'s flags: ``bits``, ``group_size``,
    ``symmetric``, ``keep``, ``error_correction``) and returns an `aios.protocols.Quantizer`:
    ``quantize(weights, *, name, calibration)``, ``dequantize(quantized, out=None)``,
    ``quantize_model(tensors, *, calibration, progress)`` and ``matmul(quantized, x, out)``,
    producing `aios.quant.QuantizedTensor`. Subclassing `aios.quant.ReferenceQuantizer` and
    replacing its kernels gives all of that. Register a native implementation with a higher
    ``priority`` than the reference one; both must produce identical packed data.
    """


@hookspec
def aios_register_recipes(register: Register) -> None:
    """Register training recipes: how a pack trains its model (added in contract 1.1).

    ``aios train NAME`` calls the factory as ``factory(recipe=..., out=..., progress=...)``:
    ``recipe`` is the path of a recipe file (YAML) or None for the pack's default recipe,
    ``out`` the run directory (resume when it holds a run of the same recipe), and ``progress``
    whether to show progress bars. It trains, evaluates and returns a mapping of metrics (plain
    numbers and strings) that the command prints. Mistakes in the recipe should raise
    `aios.errors.ConfigError` (exit code 2); other failures `aios.errors.AiosError`.
    """


@hookspec
def aios_register_evaluators(register: Register) -> None:
    """Register evaluations: how a pack scores a trained model (added in contract 1.2).

    ``aios eval NAME`` calls the factory as ``factory(model=..., baseline=..., data=...,
    progress=...)``: ``model`` is a model directory or None for the pack's shipped model,
    ``baseline`` an optional second model directory to compare against, ``data`` a list of
    data sources (names or paths) or None for the model's own held-out split, and ``progress``
    whether to show progress bars. It returns a mapping of metrics (plain numbers and strings)
    that the command prints. Mistakes in the arguments should raise
    `aios.errors.ConfigError` (exit code 2); other failures `aios.errors.AiosError`.
    """


@hookspec
def aios_register_embedders(register: Register) -> None:
    """Register text embedders for the memory (added in contract 1.2).

    The factory is called with no arguments when the config's ``memory.embedder`` names it
    (``auto``: the highest ``priority``) and returns an `aios.protocols.Embedder`: ``name``
    (str), ``dim`` (int, the vector length) and ``embed(texts, *, progress=False)`` returning a
    float32 array ``(len(texts), dim)`` whose rows are L2-normalised, so that the store's cosine
    and dot scores agree. Embed in batches and show a tqdm bar when ``progress`` is true. A
    missing optional package must raise `aios.errors.AiosError` naming what to ``pip install``.
    Records store the embedder's name, so a store is always queried with the embedder that
    filled it.
    """


@hookspec
def aios_register_adapters(register: Register) -> None:
    """Register adapter kinds for self-evolution (added in contract 1.3).

    An adapter kind is one level of the adaptation ladder (L0 composition, L1 side networks,
    L2 LoRA, ...). Register it with ``priority=-level``, so that ``evolve.adapter: auto`` tries
    the cheapest installed level first and climbs to the next only when it is rejected. The
    factory is called as ``factory(**options)`` with those options of the config's ``evolve``
    section that it takes (e.g. ``rank``, ``steps``) and returns an object with ``kind`` (str,
    stored in the adapter file), ``level`` (int) and ``evolve(model, name, *, sources, texts,
    threshold, store, min_gain, max_base_loss, held_out, progress)``: train one adapter for the
    model directory ``model`` on the text of ``sources`` (paths or corpus names) or ``texts``
    (remembered requests; with ``threshold``, only those the model is that uncertain about),
    keep it in ``store`` (`aios.adapters.AdapterStore`) under ``name`` only when its held-out
    perplexity falls by ``min_gain`` and the base domain's rises by at most ``max_base_loss``,
    log the decision, and return it (an object with ``name``, ``kind``, ``level``, ``kept``,
    ``reason``, ``parameters``, ``model_parameters``, ``seconds`` and ``table()`` rows for the
    command to print). Adapters are saved with `aios.adapters.AdapterStore`, so ``aios adapters``
    lists and deletes every kind the same way; generation applies the kinds that
    `aios.adapters.APPLY` knows (``lora``, ``sidenet``).
    """


@hookspec
def aios_diagnostics(report: Callable[[str, Any], None]) -> None:
    """Report facts about the plugin's environment for ``aios doctor``.

    Call ``report(label, value)`` for each fact, e.g. ``report("SIMD", "haswell, skylake")``.
    Keep it fast and side-effect free; an exception here is shown as a problem of the plugin.
    """
