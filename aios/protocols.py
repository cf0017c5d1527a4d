"""The objects that plugin factories build, as typing Protocols: one per kind.

`hookspecs.py` says how a plugin *registers* a factory; this module says how the core *calls*
the factory and what it must return. Everything the core calls on a plugin object is here with
its exact signature and result, so a plugin written from this file alone works; the conformance
kits in `aios.testing` check the behaviour (`check_head`, `check_sampler`, ...).

Kind -> Protocol of what the factory returns (and of the factory itself where the core passes
more than the config's options):

=========== ===================================================================
head        `Head`, plus the optional extras `WritesFiles`, `DrawsGrids`,
            `CountsParameters`, `Explains`
sampler     `Sampler`
conditioner `Conditioner`
storage     `StorageFactory` -> `MemoryStore`
quantizer   `Quantizer`
embedder    `Embedder`
recipe      `RecipeFactory` (trains when called; returns metrics)
evaluator   `EvaluatorFactory` (scores when called; returns metrics)
adapter     `AdapterKind` -> `AdapterDecision` (+ the optional `Calibrates`)
=========== ===================================================================

The engine only ever talks to these interfaces, which is what keeps modality logic out of the
core: any head of a family runs under any sampler of the same family.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from aios.schedules import NoiseSchedule

#: The two kinds of diffusion a head can run; a sampler serves exactly one of them.
FAMILIES = ("discrete", "continuous")

#: Called by a sampler after each step with (step index, number of steps, current state).
StepCallback = Callable[[int, int, Any], None]

#: What a sampler calls to query the model: (state, timestep) -> prediction.
Denoiser = Callable[[Any, Any], Any]

#: What a continuous head's model predicts (`GaussianState.prediction`).
PREDICTIONS = ("epsilon", "x0", "v")


@dataclass(frozen=True, eq=False)
class GaussianState:
    """The state of a continuous (Gaussian) generation: what a continuous head's
    ``initial_state`` returns and what its ``denoise`` receives back from the sampler.

    - ``x``: the current sample, a float array of any shape (batch first if the head batches),
      always in the variance-preserving form ``x_t = alpha_t x_0 + sigma_t noise`` of
      ``schedule`` (so the initial state is standard normal noise).
    - ``schedule``: the head's training schedule (`aios.schedules.NoiseSchedule`); the sampler
      picks its steps from it, and ``denoise(state, t)`` gets ``t`` as a (possibly fractional)
      training timestep of it: use ``schedule.alpha_sigma(t)`` or round ``t``.
    - ``prediction``: what ``denoise`` returns, an array shaped like ``x``: ``"epsilon"`` (the
      noise), ``"x0"`` (the clean sample) or ``"v"`` (``alpha_t noise - sigma_t x_0``).

    Samplers return the state with ``x`` replaced (`dataclasses.replace`), so a head may add
    fields of its own in a subclass and get them back.
    """

    x: np.ndarray
    schedule: NoiseSchedule
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {self.prediction!r}; a continuous head "
                             f"predicts one of {', '.join(PREDICTIONS)}")


@dataclass(frozen=True, eq=False)
class MaskedState:
    """The state of a discrete (masked) generation: what a discrete head's ``initial_state``
    returns and what its ``denoise`` receives back from the sampler.

    - ``tokens``: int array ``(batch, length)`` (a 1-D array is one sequence). Positions holding
      ``mask_id`` are generated; every other position (prompt, suffix for infilling) is kept.
    - ``mask_id``: the mask token; ``eos_id``: end of sequence, or None. Once a sampler places
      ``eos_id`` at a position, every later generated position of that row becomes ``eos_id``
      too (the sequence has ended; the head strips them in ``decode``).
    - ``on_prefix``: the prefix-cache hook, or None. Block-wise samplers (``semi-ar``) call
      ``on_prefix(tokens, length)`` when positions ``[:length]`` of every row are final and
      will never change again, so the head may cache their keys/values and compute only the
      rest in later ``denoise`` calls. It is a promise, not a request: ignoring it is correct.

    ``denoise(state, t)`` gets ``t`` in ``[0, 1]`` (1 = all masked) and returns logits (or
    log-probabilities) shaped ``(batch, length, vocab)`` for the *clean* token at each position;
    the sampler reads them only at masked positions and never samples ``mask_id``. A sampler may
    call ``denoise`` on a subset of the rows (finished rows and, when caching, unchanged rows
    are skipped): then ``rows`` holds the indices of the given rows in the full batch (for a
    head's per-row caches), and rows must not depend on each other.
    """

    tokens: np.ndarray
    mask_id: int
    eos_id: int | None = None
    on_prefix: Callable[[np.ndarray, int], None] | None = None
    rows: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Guided:
    """A ``denoise`` result for classifier-free guidance: both branches and the scale.

    A head that supports guidance evaluates its model with and without the condition and
    returns ``Guided(conditional, unconditional, request.guidance_scale)``; the sampler combines
    them as ``unconditional + scale * (conditional - unconditional)`` in prediction space
    (epsilon / x0 / v) for continuous heads and in log-probability space for discrete heads,
    then renormalises. A scale of 1 is the conditional model; 0 the unconditional one.
    """

    conditional: Any
    unconditional: Any
    scale: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """One call of `ArrowEngine.diffuse`, as the head, sampler and conditioners see it.

    Conditioners return a *new* request (it is immutable) with entries added to `context`
    (text or data to put before the prompt) or `conditions` (vectors for cross-attention).
    """

    prompt: Any
    modality: str
    num_steps: int
    guidance_scale: float = 1.0
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    context: tuple[Any, ...] = ()
    conditions: tuple[Any, ...] = ()

    def with_context(self, *items: Any) -> GenerationRequest:
        return replace(self, context=self.context + tuple(items))

    def with_conditions(self, *items: Any) -> GenerationRequest:
        return replace(self, conditions=self.conditions + tuple(items))


@runtime_checkable
class Head(Protocol):
    """A modality: owns the codec, the forward process and the model calls of one kind of data.

    Built as ``factory(**options)`` from the config's ``head`` section. ``modality`` is also a
    class attribute of the factory, so ``head: auto`` with ``--modality`` can choose without
    building; ``family`` equals the ``family=`` given to ``register``. A head registered with a
    priority above 0 competes for ``head: auto``: a demonstration head should register below 0.

    ``request.options`` carries the keyword arguments of ``diffuse`` unchanged; ``aios
    generate`` passes only the options the head declares (`DeclaresOptions`): the text head
    declares ``length`` (``--length``), ``suffix`` (``--infill``), ``adapters`` and
    ``adapters_dir`` (``--adapters``) and ``explain`` (``--explain``). A head ignores keys it
    does not know. Same request and same ``rng`` seed: same output.

    The runtime (contract 1.4): a factory declares ``runtimes``, the runtimes its model runs in
    (a tuple of ``"numpy"``/``"torch"``, or a function of the options dict returning one), and
    receives the config's ``runtime:`` section resolved for it (an `aios.runtime.RuntimeChoice`)
    through a ``runtime`` keyword parameter if it has one; the model then runs on its device, in
    its dtype, and through ``runtime.prepare(network)`` (``compile``). Head options for device
    or dtype, where a head has them, override the runtime's. See `aios.engine.head_runtime`.
    """

    modality: str
    family: str

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> Any:
        """The state a sampler starts from: all masks (discrete) or pure noise (continuous)."""

    def denoise(self, state: Any, t: Any, request: GenerationRequest) -> Any:
        """One model evaluation at timestep `t`: token probabilities or a noise/x0/v prediction.

        Continuous heads receive a `GaussianState`, discrete heads a `MaskedState` (the state
        their ``initial_state`` made, updated by the sampler); see those classes for `t` and the
        prediction format. Return `Guided` to have the sampler apply classifier-free guidance.
        """

    def decode(self, state: Any, request: GenerationRequest) -> Any:
        """Turn the final state into user output: `str`, an image array or a waveform."""


@runtime_checkable
class Sampler(Protocol):
    """Walks a state from noise to data; the loop (and its caching) belongs to the sampler."""

    family: str

    def sample(
        self,
        denoise: Denoiser,
        state: Any,
        *,
        num_steps: int,
        rng: np.random.Generator,
        callback: StepCallback | None = None,
    ) -> Any:
        """Return the final state after `num_steps` steps, calling `callback` after each.

        A sampler with ``steps_per_block = True`` (block-wise decoding) reads `num_steps` as
        the most model calls per block: its callback reports steps 0, 1, ... against the bound
        for the whole generation, and it ends as soon as nothing is left to decode."""


@runtime_checkable
class WritesFiles(Protocol):
    """Optional head extra: a head whose output is not text writes it to files itself
    (``aios generate`` calls ``write``; ``--out`` defaults to ``aios-MODALITY`` +
    ``output_suffix``)."""

    output_suffix: str

    def write(self, output: Any, path: Path, *, rows: Sequence[str] | None = None
              ) -> list[Path]:
        """Write one ``decode`` result (a ``--grid`` when `rows` names its row labels) to
        `path`; return every file written."""


@runtime_checkable
class DrawsGrids(Protocol):
    """Optional head extra: ``aios generate --grid`` asks which rows a prompt names."""

    def grid_rows(self, prompt: str) -> list[str]:
        """The row labels (e.g. class names) of a labelled grid for `prompt`; the engine then
        generates ``GRID_COLUMNS`` samples per row, in row order."""


@runtime_checkable
class CountsParameters(Protocol):
    """Optional head extra: ``aios plugins --verbose`` shows the head's size beside the
    shared backbone's."""

    def parameter_counts(self) -> dict[str, int]:
        """``{"backbone": n, "head": m}``: parameters of the shared backbone and of the head."""


@runtime_checkable
class Explains(Protocol):
    """Optional head extra: ``aios generate --explain`` prints what the head reports about its
    last request (None or an empty mapping: nothing to report)."""

    #: Keys the CLI reads, all optional: ``uncertainty`` (float or None), ``uncertainty_adapted``
    #: (float), ``adapters`` (what was asked), ``chosen`` ({adapter: weight}) and
    #: ``similarities`` ({adapter: router similarity}).
    last_explain: Mapping[str, Any] | None


@runtime_checkable
class DeclaresOptions(Protocol):
    """Optional head extra: the per-request options ``initial_state`` reads from
    ``request.options``. ``aios generate`` passes these (its flags and ``--option NAME=VALUE``)
    and refuses any other with the reason, instead of silently ignoring it."""

    #: option name -> what it does (shown in the refusal).
    generation_options: Mapping[str, str]


@runtime_checkable
class BatchesRows(Protocol):
    """Optional head extra of discrete heads: ``aios serve`` joins the rows of concurrent
    requests into one ``denoise`` call when the head says each row may be at its own step."""

    #: True when ``denoise`` accepts one ``t`` per row and a row's output depends only on that
    #: row (padding hidden), so rows of different requests at different steps share a call.
    row_times: bool


@runtime_checkable
class BatchesGenerations(Protocol):
    """Optional head extra: ``aios serve`` evaluates the steps of concurrent generations in one
    call when the head keeps each generation's own state (a key/value cache, say) in the state
    its ``initial_state`` made, rather than in the head. For heads whose rows cannot simply be
    padded and stacked (`BatchesRows`)."""

    def denoise_many(self, calls: Sequence[tuple[Any, Any, GenerationRequest]]) -> list[Any]:
        """``[denoise(state, t, request) for state, t, request in calls]``, computed together;
        each answer must be what ``denoise`` alone gives (up to float rounding)."""
        ...


@runtime_checkable
class FormatsChat(Protocol):
    """Optional head extra of text heads: the prompt its model expects for a conversation
    (an instruction-tuned model's chat template). ``aios serve``'s chat endpoint uses it; a
    head without it gets the messages' texts, one per line."""

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        """The prompt for `messages` ((role, text) pairs, oldest first), ending where the
        assistant's answer begins."""
        ...


@runtime_checkable
class PrefersSampler(Protocol):
    """Optional head extra: the sampler the engine uses for this head when the config leaves
    ``sampler.name`` at ``auto`` (a model decoded block by block names a block-wise sampler)."""

    #: a registered sampler name of the head's family
    preferred_sampler: str


#: The optional head extras, each checked with ``isinstance(head, Extra)``.
HEAD_EXTRAS = (WritesFiles, DrawsGrids, CountsParameters, Explains, DeclaresOptions,
               BatchesRows, BatchesGenerations, FormatsChat, PrefersSampler)


@dataclass(frozen=True)
class EngineContext:
    """What a conditioner may use besides the request: the built head and the memory store."""

    head: Head
    storage: Any | None
    embedder: Any | None = None  # the `memory.embedder`, built when a store is configured


@runtime_checkable
class Conditioner(Protocol):
    """Adds guidance to a request before sampling (a class label, retrieved memories, ...).

    Built as ``factory(**options)`` from one entry of the config's ``conditioners`` list. A
    class attribute ``retrieves_memory = True`` marks one that reads the memory store: it then
    gets ``context.embedder`` and ``diffuse(..., memory_guided=False)`` skips it.
    """

    def condition(self, request: GenerationRequest, context: EngineContext) -> GenerationRequest:
        """Return the request with added `context` or `conditions`; never mutate the input."""


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors for the memory store: what ``memory add`` stores and what the
    memory conditioner queries with, so both sides must use the same embedder."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """An ``(len(texts), dim)`` float32 array of L2-normalised rows (cosine = dot).

        Large inputs are embedded in batches; ``progress`` shows a tqdm bar on stderr.
        """


class CompactResult(TypedDict):
    """What `MemoryStore.compact` returns (``aios memory compact`` prints it)."""

    before: int  # live records before
    after: int  # live records after
    dropped: int  # records the retention policy removed


@runtime_checkable
class MemoryStore(Protocol):
    """A store of records with searchable embeddings (`aios.memory.MemoryStore` implements it).

    Records follow `aios.memory.record_schema`: id, timestamp, modality, content, embedding,
    metadata (category, source, quality, extra JSON). Tables are pyarrow tables. Bad input
    (a wrong dimension, an unknown id, k < 1) raises an `aios.errors.AiosError` subclass.
    """

    path: Path  # the store's directory
    dim: int | None  # vector length; None only for a new, still empty store
    read_only: bool

    def add(self, records: Any = None, **columns: Any) -> Sequence[str]:
        """Store records (a pyarrow table, dicts, or ``embeddings=`` arrays); return their ids."""

    def get(self, ids: str | Sequence[str]) -> Any:
        """The records with these ids, in the order asked, as a pyarrow table."""

    def update(self, records: Any = None, **columns: Any) -> Sequence[str]:
        """Replace existing records, matched by id."""

    def delete(self, ids: str | Sequence[str]) -> int:
        """Delete records by id; return how many were live."""

    def search(self, query: Any, k: int = 10, *, metric: str = "cosine", filter: Any = None,
               threshold: float | None = None, precision: str = "f32") -> Any:
        """The `k` nearest records to `query`: an `aios.memory.SearchResult` (``ids``,
        ``scores``, ``records``, best first; a list of them for a 2-D batch of queries).
        `filter` (`aios.memory.Filter`) restricts the candidates *before* ranking."""

    def count(self) -> int:
        """How many live records the store holds."""

    def batches(self) -> Iterator[Any]:
        """Every live record, as pyarrow record batches."""

    def to_table(self) -> Any:
        """Every live record as one pyarrow table."""

    def flush(self) -> None:
        """Make every acknowledged write durable and visible to readers that open later."""

    def compact(self, retention: Any = None) -> CompactResult:
        """Merge segments and apply the retention policy (`aios.memory.Retention` or a mapping
        of ``max_records``, ``max_age_days``, ``min_quality``; None: the store's own)."""

    def stats(self) -> dict[str, Any]:
        """Facts for ``aios memory stats``: at least ``path``, ``backend``, ``dim``,
        ``records``; plain JSON values."""

    def export(self, path: str) -> int:
        """Write every live record to a Parquet file; return the count."""

    def close(self) -> None:
        """Flush and release files; the store is unusable afterwards. Idempotent."""

    def __enter__(self) -> MemoryStore: ...

    def __exit__(self, *exc: object) -> None:
        """`close`."""


@runtime_checkable
class StorageFactory(Protocol):
    """How the core opens a store: what a storage plugin registers.

    The core always passes every argument below; ``**options`` are the config's ``memory``
    section keys of the backend. A new directory (or none) with ``read_only=False`` creates a
    store of `dim`; ``read_only=True`` where no store exists raises `aios.errors.AiosError` and
    creates nothing (that is how ``--memory DIR`` asks the backend whether a store is there).
    Only one writer may hold a store; a second raises `aios.memory.StoreLockedError`.
    """

    def __call__(self, path: str, *, dim: int | None = None, read_only: bool = False,
                 retention: Any = None, **options: Any) -> MemoryStore: ...


@runtime_checkable
class Quantizer(Protocol):
    """Turns float weights into packed low-bit tensors and back (`aios.quant.QuantizedTensor`).

    Every backend of the same options must produce identical bytes, so a file written by one is
    read by any other; a faster backend replaces kernels, never the format.
    """

    bits: int
    group_size: int
    symmetric: bool

    def quantize(self, weights: Any, *, name: str = "tensor", calibration: Any = None) -> Any:
        """Quantize one float tensor with the options the quantizer was built with.

        `name` appears in error messages; `calibration` (inputs of the layer, shape
        (..., in_features)) enables error correction where the quantizer supports it.
        """

    def dequantize(self, quantized: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Rebuild a float32 tensor from what `quantize` returned, into `out` when given."""

    def quantize_model(
        self,
        tensors: Mapping[str, Any],
        *,
        calibration: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Quantize a model's tensors, keeping the ones its policy keeps in 16 bits."""

    def matmul(self, quantized: Any, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = x @ W.T`` for float32 `x` (batch, in) and a quantized 2-D weight `W`."""


@runtime_checkable
class RecipeFactory(Protocol):
    """A training recipe: ``aios train NAME`` calls it and prints what it returns.

    `recipe` is a recipe file (YAML) or None for the pack's default; `out` the run directory
    (resume when it holds a run of the same recipe). Mistakes in the recipe raise
    `aios.errors.ConfigError` (exit 2), other failures `aios.errors.AiosError`.
    """

    def __call__(self, *, recipe: str | None, out: str, progress: bool) -> Mapping[str, Any]:
        """Train and evaluate; return metrics (plain numbers and strings)."""


@runtime_checkable
class EvaluatorFactory(Protocol):
    """An evaluation: ``aios eval NAME`` calls it and prints what it returns.

    `model` is a model directory or None for the pack's shipped model; `baseline` an optional
    second model directory to compare against; `data` data sources (names or paths) or None for
    the model's held-out split. Errors as for `RecipeFactory`.
    """

    def __call__(self, *, model: str | None, baseline: str | None,
                 data: Sequence[str] | None, progress: bool) -> Mapping[str, Any]:
        """Score the model; return metrics (plain numbers and strings)."""


@runtime_checkable
class AdapterDecision(Protocol):
    """What `AdapterKind.evolve` returns: the adapter trained and whether it was kept."""

    name: str
    kind: str
    level: int
    kept: bool
    reason: str  # one line: why it was kept or rejected
    parameters: int  # trained parameters
    model_parameters: int  # parameters of the whole model
    seconds: float

    def table(self) -> list[tuple[str, ...]]:
        """Rows (header first) comparing the model before and after, for the CLI to print."""


@runtime_checkable
class AdapterKind(Protocol):
    """One level of the adaptation ladder (L0 composition, L1 side networks, L2 LoRA, ...).

    Built as ``factory(**options)`` with the options of the config's ``evolve`` section that
    the factory takes; registered with ``priority=-level`` so ``evolve.adapter: auto`` tries the
    cheapest level first.
    """

    kind: str  # stored in the adapter file; `aios.adapters.APPLY` applies known kinds
    level: int

    def evolve(self, model: str | os.PathLike[str] | None, name: str, *,
               sources: Sequence[str] = (), texts: Sequence[str] = (),
               threshold: float | None = None, store: Any, min_gain: float,
               max_base_loss: float, held_out: float,
               progress: bool = True) -> AdapterDecision:
        """Train one adapter for the model directory `model` (None: the shipped model) on the
        text of `sources` (paths or corpus names) or `texts` (with `threshold`, only those the
        model is that uncertain about); keep it in `store` (`aios.adapters.AdapterStore`) under
        `name` only when held-out perplexity falls by `min_gain` and the base domain's rises by
        at most `max_base_loss`."""


@runtime_checkable
class Calibrates(Protocol):
    """Optional adapter-kind extra: ``aios evolve --calibrate`` asks the first kind of the
    ladder to measure what "typical" uncertainty is for a model."""

    def calibrate(self, model: str | os.PathLike[str] | None, progress: bool = True) -> Path:
        """Measure the model's typical loss on its own training text; return the file
        written (read later by ``--explain`` and ``evolve --from-memory``'s threshold)."""
