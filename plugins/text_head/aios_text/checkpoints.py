"""Loading published masked-diffusion checkpoints into the aios backbone and text head.

LLaDA-style checkpoints (a `config.json` plus safetensors files, single or sharded with a
`model.safetensors.index.json`, with the OLMo-derived tensor names `model.transformer.*`) map
exactly onto the aios architecture: the backbone's adaLN modulation, with zero weights, turns
into constant per-channel scales, which is what an RMSNorm weight is, and its gates become 1.
The time embedding then has no effect, as in LLaDA, which has no time conditioning.

Grouped-query attention (fewer key/value heads than query heads) loads exactly: each key/value
head's projection is repeated for the query heads that share it, which is what grouped-query
attention computes, at the memory of full multi-head attention. To run such a checkpoint at its
own size, with `transformers`' classes, use `aios.models.families.load_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from aios.models import Backbone, BackboneConfig
from aios.models import CheckpointError as FamilyCheckpointError
from aios_text.model import TextDiffusionModel, TextHead

PREFIX = "model.transformer."


class CheckpointError(FamilyCheckpointError):
    """A checkpoint directory that cannot be loaded; the message names what is wrong."""


def load_llada(directory: str | Path, *, dtype: torch.dtype = torch.float32
               ) -> tuple[TextDiffusionModel, dict[str, Any]]:
    """Build a `TextDiffusionModel` holding a LLaDA-style checkpoint's weights.

    Returns the model and the checkpoint's config (its `mask_token_id` is the mask token).
    """
    directory = Path(directory)
    config = _read_config(directory)
    tensors = _TensorFiles(directory)
    n_layers, heads = int(config["n_layers"]), int(config["n_heads"])
    kv_heads = int(config.get("n_kv_heads") or heads)
    if kv_heads < 1 or heads % kv_heads:
        raise CheckpointError(f"{directory}: n_heads {heads} is not a multiple of n_kv_heads "
                              f"{kv_heads}; the config.json is damaged")
    for flag in ("include_bias", "attention_layer_norm"):
        if config.get(flag):
            raise CheckpointError(f"{directory}: `{flag}: true` is not supported by the aios "
                                  "backbone (no biases, no QK norm)")
    embed = tensors.get(f"{PREFIX}wte.weight")
    vocab, dim = embed.shape
    hidden = tensors.get(f"{PREFIX}blocks.0.ff_proj.weight").shape[0]
    backbone_config = BackboneConfig(
        dim=dim, depth=n_layers, heads=heads, ffn_dim=hidden,
        max_len=int(config.get("max_sequence_length", 4096)),
        rope_base=float(config.get("rope_theta", 10000.0)),
        norm_eps=float(config.get("rms_norm_eps", 1e-5)),
    )
    mask_id = int(config.get("mask_token_id", vocab - 1))
    tie = bool(config.get("weight_tying", False))
    model = TextDiffusionModel(Backbone(backbone_config), TextHead(vocab, dim, mask_id, tie=tie))
    state = _map_state(tensors, n_layers, dim, tie, heads // kv_heads, dim // heads)
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected_missing = {n for n in missing if n.startswith(("backbone.time.",
                                                            "backbone.modality."))}
    if set(missing) - expected_missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not fit: missing "
                              f"{sorted(set(missing) - expected_missing)}, unexpected {unexpected}")
    return model.to(dtype).eval(), config


def _map_state(tensors: _TensorFiles, n_layers: int, dim: int, tie: bool, group: int,
               head_dim: int) -> dict[str, Any]:
    state: dict[str, Any] = {"head.embed.weight": tensors.get(f"{PREFIX}wte.weight")}
    if not tie:
        state["head.project.weight"] = tensors.get(f"{PREFIX}ff_out.weight")
    zeros = torch.zeros(dim)
    for i in range(n_layers):
        block = f"{PREFIX}blocks.{i}."
        ours = f"backbone.blocks.{i}."
        q, k, v = (tensors.get(block + f"{p}_proj.weight") for p in "qkv")
        state[ours + "attn.qkv.weight"] = torch.cat(
            [q, _repeat_heads(k, group, head_dim), _repeat_heads(v, group, head_dim)])
        state[ours + "attn.out.weight"] = tensors.get(block + "attn_out.weight")
        state[ours + "ffn.gate_up.weight"] = torch.cat(
            [tensors.get(block + "ff_proj.weight"), tensors.get(block + "up_proj.weight")])
        state[ours + "ffn.down.weight"] = tensors.get(block + "ff_out.weight")
        attn_norm = tensors.get(block + "attn_norm.weight").float()
        ff_norm = tensors.get(block + "ff_norm.weight").float()
        state[ours + "modulation.weight"] = torch.zeros(6 * dim, dim)
        state[ours + "modulation.bias"] = torch.cat(
            [zeros, attn_norm - 1, zeros + 1, zeros, ff_norm - 1, zeros + 1])
    final = tensors.get(f"{PREFIX}ln_f.weight").float()
    state["backbone.final_modulation.weight"] = torch.zeros(2 * dim, dim)
    state["backbone.final_modulation.bias"] = torch.cat([zeros, final - 1])
    return state


def _repeat_heads(weight: torch.Tensor, group: int, head_dim: int) -> torch.Tensor:
    """A key/value projection of `kv_heads` heads repeated for the `group` query heads sharing
    each: rows ``(kv_heads * head_dim, dim)`` -> ``(kv_heads * group * head_dim, dim)``."""
    if group == 1:
        return weight
    if weight.shape[0] % head_dim:
        raise CheckpointError(f"a key/value projection has shape {list(weight.shape)}, which "
                              "does not fit n_heads and n_kv_heads in config.json")
    heads = weight.reshape(weight.shape[0] // head_dim, head_dim, weight.shape[1])
    return heads.repeat_interleave(group, dim=0).reshape(-1, weight.shape[1])


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no config.json: give the directory of a "
                              "LLaDA-style checkpoint") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from exc
    missing = [k for k in ("n_layers", "n_heads") if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; is this a LLaDA-style checkpoint?")
    return config


class _TensorFiles:
    """Tensors by name across one safetensors file or the shards an index lists."""

    def __init__(self, directory: Path) -> None:
        index = directory / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.where = {name: directory / file for name, file in weight_map.items()}
        else:
            files = sorted(directory.glob("*.safetensors"))
            if not files:
                raise CheckpointError(f"{directory} holds no .safetensors files")
            self.where = {}
            for file in files:
                with safe_open(file, framework="pt") as f:
                    self.where.update({name: file for name in f.keys()})

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise CheckpointError(f"the checkpoint lacks the tensor {name!r}")
        with safe_open(self.where[name], framework="pt") as f:
            return f.get_tensor(name)
