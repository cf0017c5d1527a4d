"""Pretrained models converted once into ArrowQuant directories that open in milliseconds.

Why: a GGUF file is dequantized on every load (about 20 s for SmolLM2-135M on two cores) and a
safetensors checkpoint is float. Converted once, the linear layers are group-wise int8 (or
int4) codes in an aios weight file (`aios.weights`: Arrow IPC, memory-mapped, CRC-checked), the
rest float, next to the `transformers` config and `tokenizer.json`. GGUF files are converted
on first use into the user's cache directory (``$XDG_CACHE_HOME/aios/pretrained`` or
``~/.cache/aios/pretrained``), keyed by the source's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aios.io import write_atomic
from aios.models.families.errors import CheckpointError
from aios.models.families.pretrained import (
    LoadedFrom,
    PretrainedModel,
    assemble_network,
    load_checkpoint,
    read_tokenizer,
)
from aios.models.families.specs import FAMILIES
from aios.models.pretrained_layout import FORMAT_VERSION, MARKER, WEIGHTS, cache_dir


def convert_pretrained(model: PretrainedModel, directory: str | Path, *, bits: int = 8,
                       group_size: int = 128, quantizer: Any = None) -> Path:
    """Write `model` as an ArrowQuant directory: linear weights quantized to `bits`, the rest
    (embeddings, norms, a tied output layer) kept in float32."""
    from aios.io import save_weights
    from aios.quant import best_quantizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    quantizer = quantizer or best_quantizer(bits=bits, group_size=group_size)
    network = model.network
    tied = bool(getattr(network.config, "tie_word_embeddings", False))
    linears = {f"{n}.weight" for n, m in network.named_modules()
               if isinstance(m, torch.nn.Linear)}
    tensors: dict[str, Any] = {}
    for name, value in network.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        array = value.detach().to("cpu", torch.float32).numpy()
        if name in linears and not quantizer.keeps(name, array):
            tensors[name] = quantizer.quantize(array, name=name)
        else:
            tensors[name] = np.ascontiguousarray(array)
    save_weights(directory / WEIGHTS, tensors, metadata={"bits": str(quantizer.bits)})
    if model.tokenizer is not None:
        model.tokenizer.save(str(directory / "tokenizer.json"))
    source = model.source.path if model.source is not None else None
    marker = {"format_version": FORMAT_VERSION, "family": model.family.name,
              "mask_token_id": model.mask_token_id, "bits": quantizer.bits,
              "group_size": quantizer.group_size, "source": str(source) if source else None,
              "config": network.config.to_dict()}
    text = json.dumps(marker, indent=1, default=str)
    write_atomic(directory / MARKER, lambda f: f.write(text.encode()))
    return directory


def load_arrowquant(directory: str | Path, *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> PretrainedModel:
    """Open a directory written by `convert_pretrained`; quantized linears are dequantized once
    into `dtype` (diffusion runs many positions per call, where float matmuls win)."""
    from transformers import AutoConfig

    from aios.io import load_weights
    from aios.quant import QuantizedTensor, best_quantizer

    directory = Path(directory)
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory / MARKER} is unreadable ({exc}); convert the model "
                              "again with `aios quantize`") from exc
    if marker.get("format_version") != FORMAT_VERSION or marker.get("family") not in FAMILIES:
        raise CheckpointError(f"{directory}: written by another aios version; convert the "
                              "model again with `aios quantize`")
    settings = dict(marker["config"])
    model_type = settings.pop("model_type")
    if model_type == "mdlm":  # aios's own network (transformers has no MDLM class)
        from aios.models.families.mdlm import MDLMConfig

        config = MDLMConfig(**settings)
    else:
        config = AutoConfig.for_model(model_type, **settings)
    weights = load_weights(directory / WEIGHTS)
    backend = best_quantizer()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = {}
    with warnings.catch_warnings():
        # the mapped file is read-only and so are its tensors; inference never writes them
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for name in weights:
            value = weights[name]
            if isinstance(value, QuantizedTensor):
                value = backend.dequantize(value)
            tensor = torch.from_numpy(np.asarray(value))
            state[name] = tensor if tensor.dtype == dtype else tensor.to(dtype)
    if tied:
        state.pop("lm_head.weight", None)
    if model_type == "mdlm":
        from aios.models.families.mdlm import assemble_network as assemble_mdlm

        network = assemble_mdlm(config, state)
    else:
        network = assemble_network(config, state)
    family = FAMILIES[marker["family"]]
    model = PretrainedModel(network.eval(), family, tokenizer=read_tokenizer(directory),
                            mask_token_id=marker.get("mask_token_id"),
                            source=LoadedFrom(directory, "arrowquant"))
    return model.to(device).eval()


def cached_conversion(source: str | Path, *, bits: int = 8) -> Path:
    """The ArrowQuant directory of `source` (a GGUF file or checkpoint directory) in the cache,
    converting it on first use."""
    source = Path(source).expanduser().resolve()
    try:
        stat = source.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{source} does not exist") from None
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{bits}".encode())
    target = cache_dir() / f"{source.stem}-int{bits}-{key.hexdigest()[:12]}"
    if not (target / MARKER).exists():
        convert_pretrained(load_checkpoint(source), target, bits=bits)
    return target


__all__ = ["MARKER", "cache_dir", "cached_conversion", "convert_pretrained", "load_arrowquant"]
