"""ArrowEngine: one engine for every installed modality; runs one generation through plugins.

The engine is orchestration only. It asks the registry for factories, checks that head and
sampler speak the same family, and wires conditioners -> head -> sampler -> head. Everything
that knows what a token, a pixel or a sample is lives in a head. The configured head is built
at once; a head of another modality is built the first time `diffuse(..., modality=...)` asks
for it (heads loading the same backbone file share one copy: `ArrayBackbone.load`), and every
modality uses the engine's one memory store.

The `runtime:` section (numpy or torch, device, dtype, compile) is resolved once per head, for
what its factory declares it can run (`head_runtimes`), and handed to every head factory that
takes a ``runtime`` keyword parameter (`head_runtime`); a factory without one is built as
before, and an explicit setting its model cannot honour is refused, never ignored.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np

from aios.config import Config, load_config
from aios.errors import AiosError, ConfigError, PluginError, PluginNotFoundError, blame
from aios.protocols import (
    Conditioner,
    EngineContext,
    GenerationRequest,
    Head,
    Sampler,
    StepCallback,
)
from aios.registry import INSTALL_HINTS, Registry, default_registry
from aios.runtime import RUNNABLE, RuntimeChoice, select_from_config

#: The keyword parameter through which a head factory receives the resolved runtime.
RUNTIME_PARAMETER = "runtime"

_T = TypeVar("_T")


class ArrowEngine:
    """One head, one sampler, its conditioners and an optional memory store, ready to generate."""

    def __init__(
        self,
        config: Config,
        head: Head,
        sampler: Sampler,
        conditioners: Iterable[Conditioner] = (),
        storage: Any | None = None,
        embedder: Any | None = None,
        registry: Registry | None = None,
    ) -> None:
        if head.family != sampler.family:
            raise ConfigError(
                config.origins.get("sampler.name", "(config)"), "sampler.name",
                f"sampler {config.sampler.name!r} is {sampler.family} but head "
                f"{config.head.name!r} is {head.family}",
                f"choose a {head.family} sampler",
            )
        self.config = config
        #: The configured head (`head:` in the config pins it for its modality).
        self.head = head
        self.sampler = sampler
        self._heads: dict[str, Head] = {head.modality: head}
        self._samplers: dict[str, Sampler] = {sampler.family: sampler}
        self.conditioners = tuple(conditioners)
        self.storage = storage
        self._embedder = embedder
        self.registry = registry
        #: The request of the last `diffuse` after conditioning (retrieved memory included).
        self.last_request: GenerationRequest | None = None
        #: id(plugin object) -> "sampler 'x' from package y 1.0", for errors raised inside it.
        self.origins: dict[int, str] = {}
        #: The runtime each built head runs in, by modality (`from_config` and `head_for`
        #: resolve it; an engine assembled by hand from built heads has none).
        self.runtimes: dict[str, RuntimeChoice] = {}

    @classmethod
    def from_config(
        cls,
        config: Config | str | os.PathLike[str] | None = None,
        *,
        overrides: Iterable[str] = (),
        registry: Registry | None = None,
    ) -> ArrowEngine:
        """Build the engine from a `Config`, a YAML path, or the defaults (None)."""
        registry = registry or default_registry()
        if not isinstance(config, Config):
            config = load_config(config, overrides, registry)
        origins: dict[int, str] = {}
        head, runtime = _build_head(registry, config, config.head.name, config.head.options,
                                    origins)
        sampler_name = sampler_name_for(config, registry, head)
        sampler = _build(registry, "sampler", sampler_name, config.sampler.options,
                         origins)
        _check_block_wise(config, head, sampler)
        storage = None
        if config.memory.path is not None:
            storage = _build(registry, "storage", config.memory.backend,
                             {"path": config.memory.path, **config.memory.options}, origins)
        conditioners = [_build(registry, "conditioner", c.name, c.options, origins)
                        for c in config.conditioners]
        engine = cls(config, head, sampler, conditioners, storage, registry=registry)
        engine.origins.update(origins)
        engine.runtimes[head.modality] = runtime
        return engine

    @property
    def embedder(self) -> Any | None:
        """The `memory.embedder`, built the first time memory is queried or written (None
        without a store): a store of image vectors never needs a text embedder."""
        if self._embedder is None and self.storage is not None:
            from aios.memory import build_embedder

            self._embedder = build_embedder(self.config.memory.embedder,
                                            self.registry or default_registry())
        return self._embedder

    def diffuse(
        self,
        prompt: Any,
        *,
        modality: str | None = None,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        callback: StepCallback | None = None,
        stream: StepCallback | None = None,
        memory_guided: bool | None = None,
        remember: bool | None = None,
        **options: Any,
    ) -> Any:
        """Generate one output for `prompt`; unset arguments fall back to the config.

        `callback(step, num_steps, state)` sees the sampler's raw state after every step;
        `stream(step, num_steps, partial)` sees it decoded by the head, as a user would (text
        with its still-masked positions shown as placeholders), to show the output as it forms.
        Extra keyword `options` reach the head and conditioners unchanged in `request.options`.

        `memory_guided`: None runs the configured conditioners; True makes sure the memory is
        consulted (adding a default `memory` conditioner when none is configured); False skips
        memory retrieval. `remember` (default `memory.write_back`) stores prompt and output in
        the memory afterwards, so later generations can retrieve them.
        """
        # 1. The request: unset arguments fall back to the config.
        defaults = self.config.generate
        modality = modality or defaults.modality or self.head.modality
        steps = self.config.sampler.steps if num_steps is None else num_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {steps!r}")
        # 2. The head for the modality (built on first use) and a sampler of its family.
        head = self.head_for(modality)
        sampler = self.sampler_for(head)
        request = GenerationRequest(
            prompt=prompt,
            modality=modality,
            num_steps=steps,
            guidance_scale=defaults.guidance_scale if guidance_scale is None else guidance_scale,
            seed=defaults.seed if seed is None else seed,
            options=dict(options),
        )
        # 3. Conditioners: memory retrieval puts passages into the request's context.
        conditioners = self._conditioners(memory_guided)
        retrieves = any(getattr(c, "retrieves_memory", False) for c in conditioners)
        context = EngineContext(head=head, storage=self.storage,
                                embedder=self.embedder if retrieves else None)
        for conditioner in conditioners:
            request = self._call("conditioner", conditioner, conditioner.condition, request,
                                 context)
        self.last_request = request
        # 4. The head makes the initial state (all masks, or pure noise).
        rng = np.random.default_rng(request.seed)
        state = self._call("head", head, head.initial_state, request, rng)
        if stream is not None:
            callback = _with_stream(callback, stream, lambda s: self._call(
                "head", head, head.decode, s, request))
        # 5. The sampler's loop: the head denoises, the sampler commits tokens / steps the noise.
        state = self._call(
            "sampler", sampler, sampler.sample,
            lambda x, t: self._call("head", head, head.denoise, x, t, request),
            state,
            num_steps=request.num_steps,
            rng=rng,
            callback=callback,
        )
        # 6. The head decodes the final state.
        output = self._call("head", head, head.decode, state, request)
        # 7. Optionally written back to the memory, then returned.
        if self.config.memory.write_back if remember is None else remember:
            self._remember(prompt, output)
        return output

    def head_for(self, modality: str) -> Head:
        """The head generating `modality`: the configured one for its own modality, else the
        best installed head of that modality, built once (with its default options)."""
        head = self._heads.get(modality)
        if head is not None:
            return head
        registry = self.registry or default_registry()
        best = registry.best("head", modality=modality)
        if best is None:
            raise AiosError(
                f"modality {modality!r} was requested but the configured head "
                f"{self.config.head.name!r} generates {self.head.modality!r}; install the pack "
                f"for {modality!r} (no installed head generates it), e.g. `pip install "
                f"aios-{modality}`"
            )
        head, self.runtimes[modality] = _build_head(registry, self.config, best.name, {},
                                                    self.origins)
        self._heads[modality] = head
        return head

    def sampler_for(self, head: Head) -> Sampler:
        """The configured sampler when it speaks `head`'s family, else the best installed
        sampler of that family (built once, with its default options)."""
        sampler = self._samplers.get(head.family)
        if sampler is not None:
            return sampler
        registry = self.registry or default_registry()
        best = registry.best("sampler", family=head.family)
        if best is None:
            raise PluginNotFoundError("sampler", "auto", (), INSTALL_HINTS["sampler"])
        name = _preferred_sampler(registry, head) or best.name
        sampler = self._samplers[head.family] = _build(registry, "sampler", name, {},
                                                       self.origins)
        return sampler

    def _call(self, kind: str, plugin: object, method: Callable[..., _T], *args: Any,
              **kwargs: Any) -> _T:
        """Call a plugin's method; an exception it raises keeps its type and is `blame`d on the
        object and its package (the CLI reports it in one line); ``sys.exit()`` in plugin code
        becomes a `PluginError`. An `AiosError` passes through: it is already a message."""
        try:
            return method(*args, **kwargs)
        except (AiosError, KeyboardInterrupt):
            raise
        except SystemExit as exc:
            raise PluginError(self._origin(kind, plugin), exc) from exc
        except Exception as exc:
            blame(exc, self._origin(kind, plugin))
            raise

    def _origin(self, kind: str, plugin: object) -> str:
        return self.origins.get(id(plugin)) or f"{kind} {type(plugin).__qualname__}"

    def _conditioners(self, memory_guided: bool | None) -> tuple[Conditioner, ...]:
        if memory_guided is None:
            return self.conditioners
        plain = tuple(c for c in self.conditioners if not getattr(c, "retrieves_memory", False))
        if not memory_guided:
            return plain
        if len(plain) < len(self.conditioners):
            return self.conditioners
        return (*self.conditioners,
                _build(self.registry or default_registry(), "conditioner", "memory", {},
                       self.origins))

    def _remember(self, prompt: Any, output: Any) -> None:
        from aios.memory import remember

        if self.storage is None or self.embedder is None:
            raise ConfigError(self.config.origins.get("memory.path", "(config)"), "memory.path",
                              "writing a generation back needs a memory store",
                              "set it: --memory DIR or --set memory.path=DIR")
        if not isinstance(prompt, str) or not isinstance(output, str):
            raise AiosError("only text generations can be written back to the memory")
        remember(self.storage, self.embedder, prompt, output)

    def generate(self, prompt: str, **kwargs: Any) -> str:
        """The plain text entry point: `diffuse(prompt, modality="text", ...)`."""
        return self.diffuse(prompt, modality="text", **kwargs)

    def close(self) -> None:
        """Release the memory store, if one is open."""
        if self.storage is not None and hasattr(self.storage, "close"):
            self.storage.close()

    def __enter__(self) -> ArrowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def needed_block_wise_sampler(head: Any, sampler: Any) -> str | None:
    """The block-wise sampler `head` names when `sampler` cannot drive it, else None. A head
    that names a block-wise sampler gives logits for the current block only: any other sampler
    would reveal positions it has no logits for."""
    wanted = getattr(head, "preferred_sampler", None)
    return wanted if wanted and not getattr(sampler, "steps_per_block", False) else None


def _check_block_wise(config: Config, head: Any, sampler: Any) -> None:
    """Refuse a configured sampler that cannot drive `head` (`needed_block_wise_sampler`)."""
    wanted = needed_block_wise_sampler(head, sampler)
    if wanted:
        raise ConfigError(
            config.origins.get("sampler.name", "(config)"), "sampler.name",
            f"the head's model decodes block by block and needs a block-wise sampler, not "
            f"{config.sampler.name!r}",
            f"use `--sampler {wanted}` (or leave the sampler at auto), or choose another "
            "model (e.g. --set head.model=tiny for the text head)")


def sampler_name_for(config: Config, registry: Registry, head: Any) -> str:
    """The sampler `config` gives `head`: the configured name, or, where the config left it at
    ``auto``, the sampler the head prefers (`aios.protocols.PrefersSampler`) if installed."""
    if config.origins.get("sampler.name", "").startswith("auto"):
        return _preferred_sampler(registry, head) or config.sampler.name
    return config.sampler.name


def _preferred_sampler(registry: Registry, head: Any) -> str | None:
    """The sampler a head asks for when the config leaves the sampler at `auto` (a model
    decoded block by block needs a block-wise sampler), if it is installed and fits."""
    wanted = getattr(head, "preferred_sampler", None)
    if not wanted or wanted not in registry.names("sampler", family=head.family):
        return None
    return wanted


def head_runtimes(factory: Any, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The runtimes a head factory's model runs in, as the factory declares them: its
    ``runtimes`` attribute, a tuple such as ``("numpy",)`` or ``("torch",)``, or a function of
    the head options returning one (for a factory whose model depends on an option, like the
    text head's ``model``). A factory that declares nothing may run in either, as before."""
    declared = getattr(factory, "runtimes", None)
    if declared is None:
        return RUNNABLE
    if callable(declared):
        declared = declared(dict(options))
    runtimes = tuple(declared) if isinstance(declared, (tuple, list)) else ()
    if not runtimes or any(r not in RUNNABLE for r in runtimes):
        raise TypeError(f"the head factory declares runtimes {declared!r}; declare a tuple of "
                        f"{' and/or '.join(RUNNABLE)}")
    return runtimes


def head_runtime(registry: Registry, config: Config, name: str,
                 options: Mapping[str, Any]) -> RuntimeChoice:
    """The config's ``runtime:`` section resolved for head `name` built with `options`: what
    the engine hands its factory, and what `aios config show` prints."""
    registration = registry.get("head", name)
    with _blamed_on(registry.origin(registration)):
        runtimes = head_runtimes(registration.factory, options)
    model = options.get("model")
    label = f"head {name!r}" + (f" with model {model!r}" if model else "")
    return select_from_config(config, runtimes=runtimes, model=label)


def takes_runtime(factory: Any) -> bool:
    """Whether `factory` declares the ``runtime`` keyword parameter (then the engine passes
    the resolved `RuntimeChoice` through it)."""
    try:
        parameter = inspect.signature(factory).parameters.get(RUNTIME_PARAMETER)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                                        parameter.KEYWORD_ONLY)


def _build_head(registry: Registry, config: Config, name: str, options: Mapping[str, Any],
                origins: dict[int, str]) -> tuple[Any, RuntimeChoice]:
    """Resolve the runtime for head `name`, then build it (with the runtime when its factory
    takes one)."""
    if name == "auto":
        raise PluginNotFoundError("head", name, (), INSTALL_HINTS["head"])
    runtime = head_runtime(registry, config, name, options)
    factory = registry.get("head", name).factory
    extra = {RUNTIME_PARAMETER: runtime} if takes_runtime(factory) else {}
    return _build(registry, "head", name, {**options, **extra}, origins), runtime


@contextlib.contextmanager
def _blamed_on(origin: str) -> Iterator[None]:
    """Plugin code run inside: any failure but an `AiosError` (already a message) or Ctrl-C
    becomes a `PluginError` naming `origin`, ``sys.exit()`` included."""
    try:
        yield
    except (AiosError, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as exc:
        raise PluginError(origin, exc) from exc


def _build(registry: Registry, kind: str, name: str, options: Mapping[str, Any],
           origins: dict[int, str]) -> Any:
    """Call the factory of `name`; record where the object came from for later errors."""
    if name == "auto":
        raise PluginNotFoundError(kind, name, (), INSTALL_HINTS[kind])
    registration = registry.get(kind, name)
    origin = registry.origin(registration)
    with _blamed_on(origin):
        built = registration.factory(**options)
    origins[id(built)] = origin
    return built


def store_exists(registry: Registry, backend: str, path: str | os.PathLike[str]) -> str:
    """"" when the storage `backend` finds a store at `path`, else its reason why not.

    The contract makes the backend the judge: a read-only open where no store exists raises an
    `AiosError` and creates nothing (`aios.testing.check_storage` checks it).
    """
    registration = registry.get("storage", backend)
    try:
        store = registration.factory(path=os.fspath(path), dim=None, read_only=True,
                                     retention=None)
    except AiosError as exc:
        return str(exc)
    except (Exception, SystemExit) as exc:  # attributed, the cause kept
        raise PluginError(registry.origin(registration), exc) from exc
    store.close()
    return ""


def _with_stream(callback: StepCallback | None, stream: StepCallback,
                 decode: Callable[[Any], Any]) -> StepCallback:
    def both(step: int, num_steps: int, state: Any) -> None:
        if callback is not None:
            callback(step, num_steps, state)
        stream(step, num_steps, decode(state))

    return both
