"""The backbone's forward pass in NumPy, for generation without torch.

Training needs torch (`aios.models.backbone`); generating does not. Importing torch costs about as
much as a whole short generation on a small CPU, so heads run inference with this module:
the same network, read from the same model directory (int8 weights are dequantized once by
the best installed quantizer), computing the same outputs (tests hold the two to 1e-4). It
supports everything generation uses: padding masks, attention masks, the key/value cache,
cross-attention to condition vectors and the side branches of level-1 adapters (`sidenet`):
weights named `blocks.N.side.down.weight` / `blocks.N.side.up.weight` add a branch to block N.
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aios.errors import AiosError
from aios.models.backbone_config import BackboneConfig, read_model_config


@dataclass
class ArrayKVCache:
    """Per-layer keys and values (batch, heads, length, head_dim) of processed positions."""

    keys: list[np.ndarray]
    values: list[np.ndarray]
    padding_mask: np.ndarray  # (batch, length) bool, True for real positions

    @property
    def length(self) -> int:
        return self.padding_mask.shape[1]

    def rows(self, index: np.ndarray) -> ArrayKVCache:
        """The cache of a subset of the batch's rows."""
        return ArrayKVCache([k[index] for k in self.keys], [v[index] for v in self.values],
                            self.padding_mask[index])


#: Backbones in memory by (file content hash, configuration); an entry lives while a head holds it.
_SHARED: weakref.WeakValueDictionary[tuple[str, str], ArrayBackbone] = (
    weakref.WeakValueDictionary())
_HASHES: dict[tuple[str, int, int, int], str] = {}


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime, inode): a second head
    loading the same file pays one `stat`, not another read."""
    path = os.path.realpath(path)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, stat.st_ino)
    digest = _HASHES.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                sha.update(block)
        digest = _HASHES[key] = sha.hexdigest()
    return digest


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a weight file as float32 (quantized ones dequantized once)."""
    from aios.io import load_weights
    from aios.quant import QuantizedTensor
    from aios.registry import default_registry

    weights = load_weights(path)
    registration = default_registry().best("quantizer")
    quantizer = registration.factory() if registration is not None else None
    arrays = {}
    for name in weights:
        value = weights[name]
        if isinstance(value, QuantizedTensor):
            if quantizer is None:  # pragma: no cover - the core always registers `reference`
                raise AiosError(f"{path} holds quantized tensors but no quantizer is installed")
            arrays[name] = quantizer.dequantize(value).astype(np.float32, copy=False)
        else:
            arrays[name] = np.array(value, dtype=np.float32)
    return arrays


def rms_norm(x: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives the right -0
        return x / (1.0 + np.exp(-x))


def softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """softmax(q k^T / sqrt(d)) v with `mask` (broadcastable to the scores) False = hidden."""
    scores = (q @ np.swapaxes(k, -1, -2)) * np.float32(q.shape[-1] ** -0.5)
    scores = np.where(mask, scores, np.float32(-np.inf))
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ v


class ArrayBackbone:
    """`aios.models.backbone.Backbone.forward` on NumPy arrays (float32), inference only."""

    def __init__(self, config: BackboneConfig, weights: Mapping[str, np.ndarray]) -> None:
        self.config = config
        expected = _expected_names(config)
        missing = sorted(expected - set(weights))
        if missing:
            raise AiosError(f"the backbone weights lack {missing[:5]}; the file does not belong "
                            "to this configuration, restore the model directory")
        self.w = {name: np.ascontiguousarray(weights[name], dtype=np.float32) for name in expected}
        self.side = _side_branches(config, weights)
        half = config.dim // config.heads // 2
        freqs = config.rope_base ** (-np.arange(half, dtype=np.float32) / half)
        angles = np.arange(config.max_len, dtype=np.float32)[:, None] * freqs[None]
        self._cos, self._sin = np.cos(angles), np.sin(angles)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ArrayBackbone:
        """The backbone of a model directory, shared: heads whose backbone files have the same
        content (the image and audio packs ship the text model's frozen backbone unchanged)
        get the one copy already in memory. Callers must not modify it (adapters build a new
        backbone from adapted weights)."""
        config = BackboneConfig.from_dict(read_model_config(directory)["backbone"])
        path = Path(directory) / "backbone.arrow"
        key = (content_hash(path), repr(sorted(asdict(config).items())))
        shared = _SHARED.get(key)
        if shared is None:
            shared = cls(config, load_arrays(path))
            _SHARED[key] = shared
        return shared

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        y = x @ self.w[f"{name}.weight"].T
        bias = self.w.get(f"{name}.bias")
        return y if bias is None else y + bias

    def _rotate(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        cos, sin = self._cos[positions], self._sin[positions]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)

    def __call__(self, x: np.ndarray, t: np.ndarray, modality: int | np.ndarray, *,
                 padding_mask: np.ndarray | None = None,
                 attention_mask: np.ndarray | None = None,
                 cond: np.ndarray | None = None, cond_mask: np.ndarray | None = None,
                 past: ArrayKVCache | None = None,
                 return_cache: bool = False) -> np.ndarray | tuple[np.ndarray, ArrayKVCache]:
        """Same arguments and result as the torch backbone's forward (arrays, not tensors)."""
        config = self.config
        x = np.asarray(x, dtype=np.float32)
        b, n, d = x.shape
        if d != config.dim:
            raise ValueError(f"x must be (batch, length, {config.dim}), got {x.shape}")
        offset = 0 if past is None else past.length
        if offset + n > config.max_len:
            raise ValueError(f"{offset + n} positions exceed max_len {config.max_len}; "
                             "shorten the input")
        if cond is not None and config.cond_dim is None:
            raise ValueError("this backbone has no cross-attention (cond_dim is None)")
        if padding_mask is None:
            padding_mask = np.ones((b, n), dtype=bool)
        positions = np.arange(offset, offset + n)
        visible = padding_mask if past is None else np.concatenate([past.padding_mask,
                                                                   padding_mask], axis=1)
        mask = visible[:, None, None, :]
        if attention_mask is not None:
            mask = mask & np.asarray(attention_mask, dtype=bool)[:, None]
        modality = np.broadcast_to(np.asarray(modality), (b,))
        c = self._linear("time.2", silu(self._linear("time.0", _timestep_embedding(t, d))))
        c = silu(c + self.w["modality.weight"][modality])
        heads, head_dim = config.heads, d // config.heads
        keys, values = [], []
        for i in range(config.depth):
            p = f"blocks.{i}"
            block_input = x
            shift1, scale1, gate1, shift2, scale2, gate2 = np.split(
                self._linear(f"{p}.modulation", c)[:, None], 6, axis=-1)
            h = rms_norm(x, config.norm_eps) * (1 + scale1) + shift1
            qkv = self._linear(f"{p}.attn.qkv", h).reshape(b, n, 3, heads, head_dim)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)
            q, k = self._rotate(q, positions), self._rotate(k, positions)
            if past is not None:
                k = np.concatenate([past.keys[i], k], axis=2)
                v = np.concatenate([past.values[i], v], axis=2)
            y = softmax_attention(q, k, v, mask).transpose(0, 2, 1, 3).reshape(b, n, d)
            x = x + gate1 * self._linear(f"{p}.attn.out", y)
            if config.cond_dim:
                x = x + self._cross(p, x, cond, cond_mask)
            h = rms_norm(x, config.norm_eps) * (1 + scale2) + shift2
            gate, up = np.split(self._linear(f"{p}.ffn.gate_up", h), 2, axis=-1)
            x = x + gate2 * self._linear(f"{p}.ffn.down", silu(gate) * up)
            if i in self.side:
                down_w, up_w = self.side[i]
                x = x + silu(rms_norm(block_input, config.norm_eps) @ down_w.T) @ up_w.T
            keys.append(k)
            values.append(v)
        shift, scale = np.split(self._linear("final_modulation", c)[:, None], 2, axis=-1)
        out = rms_norm(x, config.norm_eps) * (1 + scale) + shift
        if return_cache:
            return out, ArrayKVCache(keys, values, visible)
        return out

    def _cross(self, p: str, x: np.ndarray, cond: np.ndarray | None,
               cond_mask: np.ndarray | None) -> np.ndarray:
        b, n, d = x.shape
        null = np.broadcast_to(self.w[f"{p}.cross.null"], (b, 1, self.config.cond_dim))
        cond = null if cond is None else np.concatenate([null, cond.astype(np.float32)], axis=1)
        m = cond.shape[1]
        keep = np.ones((b, m), dtype=bool)
        if cond_mask is not None and m > 1:
            keep[:, 1:] = cond_mask
        heads, head_dim = self.config.heads, d // self.config.heads
        q = self._linear(f"{p}.cross.q", rms_norm(x, self.config.norm_eps)
                         * self.w[f"{p}.cross.norm.weight"])
        q = q.reshape(b, n, heads, head_dim).transpose(0, 2, 1, 3)
        k, v = self._linear(f"{p}.cross.kv", cond).reshape(b, m, 2, heads, head_dim).transpose(
            2, 0, 3, 1, 4)
        y = softmax_attention(q, k, v, keep[:, None, None, :])
        return self._linear(f"{p}.cross.out", y.transpose(0, 2, 1, 3).reshape(b, n, d))


def _timestep_embedding(t: np.ndarray, dim: int, max_period: float = 10000.0) -> np.ndarray:
    half = dim // 2
    freqs = np.exp(-np.log(max_period) * np.arange(half, dtype=np.float32) / half)
    angles = 1000.0 * np.asarray(t, dtype=np.float32).reshape(-1)[:, None] * freqs[None]
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


def _side_branches(config: BackboneConfig, weights: Mapping[str, np.ndarray]
                   ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{block index: (down, up)} of the side branches in `weights`; a branch must fit the
    backbone (a block that exists, dim columns in, dim rows out)."""
    side: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for name in weights:
        match = _SIDE.match(name)
        if not match or match.group(2) != "down":
            continue
        index = int(match.group(1))
        down = np.ascontiguousarray(weights[name], dtype=np.float32)
        up = np.ascontiguousarray(weights.get(f"blocks.{index}.side.up.weight"), dtype=np.float32)
        if (index >= config.depth or up.ndim != 2 or down.ndim != 2
                or down.shape[1] != config.dim or up.shape != (config.dim, down.shape[0])):
            raise AiosError(f"side branch of block {index} ({down.shape}, {up.shape}) does not "
                            f"fit this backbone (depth {config.depth}, dim {config.dim}); the "
                            "adapter belongs to another model")
        side[index] = (down, up)
    return side


_SIDE = re.compile(r"^blocks\.(\d+)\.side\.(down|up)\.weight$")


def _expected_names(config: BackboneConfig) -> set[str]:
    names = {"time.0.weight", "time.0.bias", "time.2.weight", "time.2.bias", "modality.weight",
             "final_modulation.weight", "final_modulation.bias"}
    for i in range(config.depth):
        p = f"blocks.{i}"
        names |= {f"{p}.attn.qkv.weight", f"{p}.attn.out.weight", f"{p}.ffn.gate_up.weight",
                  f"{p}.ffn.down.weight", f"{p}.modulation.weight", f"{p}.modulation.bias"}
        if config.cond_dim:
            names |= {f"{p}.cross.{n}" for n in ("norm.weight", "q.weight", "kv.weight",
                                                 "null", "out.weight")}
    return names
