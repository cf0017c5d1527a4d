"""A Llama-architecture network (SmolLM2 and kin) in NumPy, for generation without torch.

Why: importing torch and `transformers`' Llama costs about 5 s on a small CPU, more than a whole
short generation, and torch's OpenMP threads spin on the cores the native kernels need. This
forward reads an ArrowQuant pretrained directory (`aios.models.families.convert_pretrained`:
group-wise int8/int4 linear weights, float32 embeddings and norms, the `transformers` config)
by memory-mapping it, and multiplies the quantized weights as they are stored with the
installed quantizer's int8-activation kernel (`prepared_q8`: AVX-512 VNNI in `aios_native`),
so opening the 135M model takes a fraction of a second and its weights stay 4x smaller than
float32 in memory.

It computes what `transformers.LlamaModel` computes (RMSNorm, rotary positions, grouped-query
attention, SwiGLU; tests hold the two together on tiny weights in the published layout), with
a boolean attention mask ``(batch, 1, queries, keys)`` given by the caller (causal,
bidirectional or block-causal alike) and a key/value cache in the duck type `transformers`
calls (``cache.update(keys, values, layer) -> (all keys, all values)``, e.g.
`aios.runtime.RowCaches`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from aios.errors import AiosError
from aios.models.backbone_numpy import rms_norm, silu, softmax_attention
from aios.models.pretrained_layout import MARKER, WEIGHTS, read_marker

#: `transformers` Llama settings this forward implements (others are refused by name).
_ROPE_TYPES = ("default",)


class _Linear:
    """``x @ W.T`` for a float32 weight, or the int8-activation product of a quantized one.

    Several weights with the same input (q/k/v, gate/up) are joined into one product: one
    kernel call instead of three, whose threads wake once."""

    def __init__(self, weights: list[Any], backend: Any) -> None:
        from aios.quant import QuantizedTensor

        quantized = [isinstance(w, QuantizedTensor) for w in weights]
        self.splits = np.cumsum([w.shape[0] for w in weights])[:-1]
        joined = (weights[0] if len(weights) == 1 else _join_rows(weights)) if all(
            quantized) else None
        if joined is not None:
            self.rows = joined.rows
            self._product = backend.prepared_q8(joined)
            self._weight = None
        else:
            self._weight = np.concatenate([
                backend.dequantize(w).astype(np.float32) if q else np.asarray(w, np.float32)
                for w, q in zip(weights, quantized, strict=True)])
            self.rows = self._weight.shape[0]
            self._product = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
        if self._product is None:
            out = flat @ self._weight.T
        else:
            out = np.empty((flat.shape[0], self.rows), np.float32)
            self._product.run(flat, out)
        return out.reshape(*x.shape[:-1], self.rows)

    def parts(self, x: np.ndarray) -> list[np.ndarray]:
        """The outputs of the joined weights, in order."""
        return np.split(self(x), self.splits, axis=-1)


def _join_rows(weights: list[Any]) -> Any:
    """One quantized matrix of the rows of `weights` (same columns, bits and groups)."""
    from dataclasses import replace

    first = weights[0]
    if any((w.shape[1], w.bits, w.group_size, w.symmetric) !=
           (first.shape[1], first.bits, first.group_size, first.symmetric) for w in weights):
        return None
    zeros = None if first.zero_points is None else np.concatenate(
        [w.zero_points for w in weights])
    return replace(first, shape=(sum(w.shape[0] for w in weights), first.shape[1]),
                   data=np.concatenate([w.data for w in weights]),
                   scales=np.concatenate([w.scales for w in weights]), zero_points=zeros)


class _Layer:
    def __init__(self, weights: Mapping[str, Any], prefix: str, backend: Any) -> None:
        def linear(*names: str) -> _Linear:
            return _Linear([weights[f"{prefix}.{name}.weight"] for name in names], backend)

        self.qkv = linear("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
        self.o = linear("self_attn.o_proj")
        self.gate_up = linear("mlp.gate_proj", "mlp.up_proj")
        self.down = linear("mlp.down_proj")
        self.input_norm = np.asarray(weights[f"{prefix}.input_layernorm.weight"], np.float32)
        self.post_norm = np.asarray(weights[f"{prefix}.post_attention_layernorm.weight"],
                                    np.float32)


class ArrayLlama:
    """``hidden(inputs, mask, positions, cache)`` and ``logits(hidden)`` of a Llama network.

    `config` is the `transformers` LlamaConfig as a dict; `weights` maps `transformers`' tensor
    names to float32 arrays or `aios.quant.QuantizedTensor`s; `backend` is the quantizer whose
    kernels multiply the quantized ones (the best installed one when None).
    """

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, Any], *,
                 backend: Any = None) -> None:
        settings = dict(config)
        self.config = SimpleNamespace(**settings)
        rope = settings.get("rope_parameters") or settings.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in _ROPE_TYPES:
            raise AiosError(f"rope type {rope_type!r} is not implemented by the numpy Llama "
                            "runtime; run this model with runtime.name: torch")
        theta = float(rope.get("rope_theta", settings.get("rope_theta", 10000.0)))
        if settings.get("attention_bias") or settings.get("mlp_bias"):
            raise AiosError("the numpy Llama runtime has no projection biases; run this model "
                            "with runtime.name: torch")
        self.dim = int(settings["hidden_size"])
        self.heads = int(settings["num_attention_heads"])
        self.kv_heads = int(settings.get("num_key_value_heads") or self.heads)
        self.head_dim = int(settings.get("head_dim") or self.dim // self.heads)
        self.eps = float(settings.get("rms_norm_eps", 1e-6))
        self.vocab_size = int(settings["vocab_size"])
        if backend is None:
            from aios.registry import default_registry

            backend = default_registry().best("quantizer").factory()
        layers = int(settings["num_hidden_layers"])
        expected = _expected_names(layers, bool(settings.get("tie_word_embeddings")))
        missing = sorted(expected - set(weights))
        if missing:
            raise AiosError(f"the Llama weights lack {missing[:3]}; the file does not hold "
                            "this configuration's network, convert the model again")
        self._parameters = sum(math.prod(weights[name].shape) for name in expected)
        self.embeddings = np.asarray(weights["model.embed_tokens.weight"], np.float32)
        self.layers = [_Layer(weights, f"model.layers.{i}", backend) for i in range(layers)]
        self.norm = np.asarray(weights["model.norm.weight"], np.float32)
        # the output layer is a fifth of the work per masked position: a tied one (the float
        # embeddings) is quantized here to int8 like the other linears, once, in some 30 ms
        # (on SmolLM2 this moves the perplexity less than the int8 activations of the body do)
        head = weights.get("lm_head.weight")
        if head is None:
            head = type(backend)(bits=8).quantize(self.embeddings, name="lm_head.weight")
        self.lm_head = _Linear([head], backend)
        half = self.head_dim // 2
        self._inv_freq = (1.0 / theta ** (np.arange(half, dtype=np.float64) / half))

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, backend: Any = None) -> ArrayLlama:
        """Open an ArrowQuant pretrained directory (memory-mapped, nothing dequantized)."""
        from aios.io import load_weights

        directory = Path(directory)
        marker = read_marker(directory)
        if marker["config"].get("model_type") != "llama":
            raise AiosError(f"{directory / MARKER} holds a {marker['config'].get('model_type')!r}"
                            " network; the numpy runtime runs the Llama family only, use "
                            "runtime.name: torch")
        return cls(marker["config"], load_weights(directory / WEIGHTS), backend=backend)

    def parameter_count(self) -> int:
        return self._parameters

    # -- the forward ------------------------------------------------------------------------------

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.embeddings[np.asarray(ids)]

    def hidden(self, inputs: np.ndarray, mask: np.ndarray, positions: np.ndarray,
               cache: Any = None) -> np.ndarray:
        """Last hidden states ``(batch, length, dim)`` of input vectors ``(batch, length,
        dim)``; `mask` ``(batch, 1, length, cached + length)`` True = may attend; `positions`
        ``(batch, length)`` the rotary positions; `cache` receives each layer's keys and
        values (the new positions') and returns the whole sequence's."""
        x = np.asarray(inputs, dtype=np.float32)
        batch, length, _ = x.shape
        angles = np.asarray(positions, dtype=np.float64)[..., None] * self._inv_freq
        cos = np.cos(angles).astype(np.float32)[:, None]  # (batch, 1, length, half)
        sin = np.sin(angles).astype(np.float32)[:, None]
        allowed = np.asarray(mask, dtype=bool)[:, :, None]  # (batch, 1, 1, length, keys)
        group = self.heads // self.kv_heads
        for index, layer in enumerate(self.layers):
            h = rms_norm(x, self.eps) * layer.input_norm
            q, k, v = layer.qkv.parts(h)
            q = _rotate(_split_heads(q, self.heads), cos, sin)
            k = _rotate(_split_heads(k, self.kv_heads), cos, sin)
            v = _split_heads(v, self.kv_heads)
            if cache is not None:
                k, v = cache.update(k, v, index)
            # grouped-query attention: the query heads of one key/value head share it
            q = q.reshape(batch, self.kv_heads, group, length, self.head_dim)
            attended = softmax_attention(q, k[:, :, None], v[:, :, None], allowed).reshape(
                batch, self.heads, length, self.head_dim)
            x = x + layer.o(np.swapaxes(attended, 1, 2).reshape(batch, length, -1))
            h = rms_norm(x, self.eps) * layer.post_norm
            gate, up = layer.gate_up.parts(h)
            x = x + layer.down(silu(gate) * up)
        return rms_norm(x, self.eps) * self.norm

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        return self.lm_head(np.asarray(hidden, dtype=np.float32))


def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    batch, length, width = x.shape
    return np.swapaxes(x.reshape(batch, length, heads, width // heads), 1, 2)


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotary positions as `transformers` applies them (the two halves of each head rotate
    together: ``x * cos + rotate_half(x) * sin``)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _expected_names(layers: int, tied: bool) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not tied:
        names.add("lm_head.weight")
    for i in range(layers):
        p = f"model.layers.{i}"
        names |= {f"{p}.self_attn.{x}_proj.weight" for x in "qkvo"}
        names |= {f"{p}.mlp.{x}_proj.weight" for x in ("gate", "up", "down")}
        names |= {f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"}
    return names


__all__ = ["ArrayLlama"]
