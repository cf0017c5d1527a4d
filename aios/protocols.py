"""The objects that plugin factories build, as typing Protocols.

`hookspecs.py` says how a plugin *registers* a factory; this module says what the factory must
*return*. The engine only ever talks to these interfaces, which is what keeps modality logic out
of the core: any head of a family runs under any sampler of the same family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: The two kinds of diffusion a head can run; a sampler serves exactly one of them.
FAMILIES = ("discrete", "continuous")

#: Called by a sampler after each step with (step index, number of steps, current state).
StepCallback = Callable[[int, int, Any], None]

#: What a sampler calls to query the model: (state, timestep) -> prediction.
Denoiser = Callable[[Any, Any], Any]


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
    """A modality: owns the codec, the forward process and the model calls of one kind of data."""

    modality: str
    family: str

    def initial_state(self, request: GenerationRequest, rng: np.random.Generator) -> Any:
        """The state a sampler starts from: all masks (discrete) or pure noise (continuous)."""

    def denoise(self, state: Any, t: Any, request: GenerationRequest) -> Any:
        """One model evaluation at timestep `t`: token probabilities or a noise/x0/v prediction."""

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
        """Return the final state after `num_steps` steps, calling `callback` after each."""


@dataclass(frozen=True)
class EngineContext:
    """What a conditioner may use besides the request: the built head and the memory store."""

    head: Head
    storage: Any | None


@runtime_checkable
class Conditioner(Protocol):
    """Adds guidance to a request before sampling (a class label, retrieved memories, ...)."""

    def condition(self, request: GenerationRequest, context: EngineContext) -> GenerationRequest:
        """Return the request with added `context` or `conditions`; never mutate the input."""


@runtime_checkable
class MemoryStore(Protocol):
    """A store of records with searchable embeddings (the full protocol grows with ArrowStorage)."""

    def add(self, records: Any) -> Sequence[str]:
        """Store records and return their ids."""

    def search(self, query: Any, k: int = 10) -> Any:
        """The `k` nearest records to `query`."""

    def count(self) -> int:
        """How many live records the store holds."""

    def close(self) -> None:
        """Flush and release files; the store is unusable afterwards."""


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
