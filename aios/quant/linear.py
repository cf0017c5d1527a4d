"""A linear layer whose weight stays quantized: what a quantized model runs at inference.

By default (``activations="int8"``) the inputs are quantized too, per row and weight group, and
the backend's ``matmul_q8`` sums each group's products in integers (AVX-512 VNNI / AVX2 in the
native backend; numerics and error bound in `aios.quant.activations`): the packed codes are read
as they are, 4-8x fewer bytes than float32, and one instruction does 32 multiply-adds.

``activations="float"`` keeps the inputs exact (the weight-only path): at small batch the
backend's fused ``matmul`` expands one weight row at a time in cache; above `FUSED_MAX_BATCH`
the weight is dequantized (into a fresh buffer) and torch's BLAS does the product.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from aios.errors import QuantizationError
from aios.quant.tensor import QuantizedTensor

#: Up to this many input rows the exact fused kernel is used; above it, dequantize + BLAS.
FUSED_MAX_BATCH = 8
#: How a quantized layer treats its inputs: quantized to int8 per group, or kept float32.
ACTIVATIONS = ("int8", "float")


def best_quantizer(**options: Any) -> Any:
    """Build the highest-priority installed quantizer (native over reference)."""
    from aios.registry import default_registry

    registration = default_registry().best("quantizer")
    if registration is None:  # pragma: no cover - the core always registers `reference`
        from aios.quant.quantizer import ReferenceQuantizer

        return ReferenceQuantizer(**options)
    return registration.factory(**options)


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with `W` a 2-D `QuantizedTensor` (inference only: `W` has no gradient)."""

    def __init__(
        self, weight: QuantizedTensor, bias: torch.Tensor | None = None, *, backend: Any = None,
        activations: str = "int8",
    ) -> None:
        super().__init__()
        if len(weight.shape) != 2:
            raise QuantizationError(
                f"a linear layer needs a 2-D weight, got shape {list(weight.shape)}")
        self.weight_q = weight.validate()
        self.out_features, self.in_features = weight.shape
        self.backend = backend if backend is not None else best_quantizer()
        self.set_activations(activations)
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise QuantizationError(
                f"bias has shape {list(bias.shape)}, expected [{self.out_features}]")
        self.bias = None if bias is None else nn.Parameter(
            bias.detach().float().clone(), requires_grad=False)

    def set_activations(self, activations: str) -> None:
        """``"int8"``: quantize the inputs and use the integer kernels; ``"float"``: keep them
        exact (the weight-only path)."""
        if activations not in ACTIVATIONS:
            raise QuantizationError(
                f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
        self.activations = activations
        self._product = self.backend.prepared_q8(
            self.weight_q, helper=_omp_threads_sleep()) if activations == "int8" else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, quantizer: Any, *,
                    activations: str = "int8") -> QuantizedLinear:
        """Quantize an `nn.Linear`'s weight with `quantizer` (which also runs the layer)."""
        weight = quantizer.quantize(linear.weight.detach(), name="weight")
        return cls(weight, linear.bias, backend=quantizer, activations=activations)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight, materialised (what the large-batch path multiplies with)."""
        out = torch.empty(self.out_features, self.in_features, dtype=torch.float32)
        self.backend.dequantize(self.weight_q, out=out.numpy())
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise QuantizationError(
                f"input has {x.shape[-1]} features, the layer expects {self.in_features}")
        inference = x.is_cpu and not (torch.is_grad_enabled() and x.requires_grad)
        if inference and self._product is not None and x.dtype == torch.float32:
            return self._int8_forward(x)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if inference and (self._product is not None or flat.shape[0] <= FUSED_MAX_BATCH):
            inputs = flat.detach().to(torch.float32).contiguous()
            out = torch.empty(flat.shape[0], self.out_features, dtype=torch.float32)
            if self._product is not None:
                self._product.run(inputs.numpy(), out.numpy())
            else:
                self.backend.matmul(self.weight_q, inputs.numpy(), out.numpy())
            if self.bias is not None:
                out += self.bias
        else:
            weight = self.dequantized_weight().to(x.device)
            bias = None if self.bias is None else self.bias.to(x.device)
            out = nn.functional.linear(flat.to(torch.float32), weight, bias)
        return out.reshape(*lead, self.out_features).to(x.dtype)

    def _int8_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The hot path (float32 on the CPU, no gradient), in NumPy views end to end: at batch 1
        a small layer's product takes a few microseconds, so each torch call saved counts."""
        inputs = np.ascontiguousarray(x.detach().numpy()).reshape(-1, self.in_features)
        out = np.empty((*x.shape[:-1], self.out_features), np.float32)
        self._product.run(inputs, out.reshape(-1, self.out_features))
        if self.bias is not None:
            out += self.bias.detach().numpy()
        return torch.from_numpy(out)

    def extra_repr(self) -> str:
        q = self.weight_q
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"{q.quant_type}, group_size={q.group_size}, activations={self.activations}, "
                f"backend={getattr(self.backend, 'backend', type(self.backend).__name__)}")


def _omp_threads_sleep() -> bool:
    """Whether torch's OpenMP workers sleep between operations (``OMP_WAIT_POLICY=PASSIVE``).
    Under torch's default they spin on the other cores after each operation, and the native
    kernels' helper thread, which spins between calls too, would take turns with them there
    (measured: an int8 backbone in torch 0.73x float32 with the helper, 1.02x without), so
    the layers use rayon's pool instead."""
    import os

    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def quantize_linears(module: nn.Module, quantizer: Any, *, activations: str = "int8"
                     ) -> nn.Module:
    """Replace, in place, every `nn.Linear` inside `module` whose weight the quantizer does not
    keep in 16 bits by a `QuantizedLinear` (names as in ``module.state_dict()``)."""
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Linear) and not quantizer.keeps(f"{name}.weight", child.weight):
            _replace(module, name, QuantizedLinear.from_linear(child, quantizer,
                                                               activations=activations))
    return module


def set_activations(module: nn.Module, activations: str) -> nn.Module:
    """Switch every `QuantizedLinear` inside `module` to int8 or float activations."""
    for child in module.modules():
        if isinstance(child, QuantizedLinear):
            child.set_activations(activations)
    return module


def dequantize_linears(module: nn.Module) -> nn.Module:
    """Replace, in place, every `QuantizedLinear` by an `nn.Linear` holding its dequantized
    weight: quantized layers have no gradient, so fine-tuning a model loaded from quantized
    weights (what ships) starts by turning them back into trainable float layers."""
    for name, child in list(module.named_modules()):
        if isinstance(child, QuantizedLinear):
            linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(child.dequantized_weight())
                if child.bias is not None:
                    linear.bias.copy_(child.bias)
            _replace(module, name, linear)
    return module


def load_quantized(module: nn.Module, weights: Any, *, backend: Any = None,
                   activations: str = "int8") -> nn.Module:
    """Load a weight file (or any mapping of name -> tensor) into `module`: linears whose weight
    is quantized become `QuantizedLinear` running on the (memory-mapped) codes; every other
    tensor is copied into its parameter or buffer. Raises if a name is missing either side."""
    backend = backend if backend is not None else best_quantizer()
    state = module.state_dict()
    unknown = sorted(set(weights) - set(state))
    missing = sorted(set(state) - set(weights))
    if unknown or missing:
        raise QuantizationError(
            f"the weights do not match the model: missing {missing[:5]}, unexpected "
            f"{unknown[:5]}; load weights saved from this architecture")
    for name, child in list(module.named_modules()):
        quantized = weights[f"{name}.weight"] if isinstance(child, nn.Linear) else None
        if isinstance(quantized, QuantizedTensor):
            # np.array copies: the mapped file is read-only
            bias = None if child.bias is None else torch.as_tensor(
                np.array(weights[f"{name}.bias"], dtype=np.float32))
            _replace(module, name, QuantizedLinear(quantized, bias, backend=backend,
                                                   activations=activations))
    with torch.no_grad():
        for name, target in module.state_dict(keep_vars=True).items():
            value = weights[name]
            if isinstance(value, QuantizedTensor):
                raise QuantizationError(
                    f"{name} is quantized but is not the weight of a linear layer; only linear "
                    "layers run quantized: keep it in 16 bits when quantizing")
            target.copy_(torch.as_tensor(np.array(value)))
    return module


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def quantized_bytes(module: nn.Module) -> int:
    """Bytes of the packed weights of every `QuantizedLinear` inside `module`."""
    return int(sum(m.weight_q.nbytes for m in module.modules() if isinstance(m, QuantizedLinear)))


__all__ = ["ACTIVATIONS", "FUSED_MAX_BATCH", "QuantizedLinear", "best_quantizer", "load_quantized",
           "quantize_linears", "quantized_bytes", "set_activations"]
