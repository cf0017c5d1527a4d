"""Model directories: the shared backbone and each head's weights, as the original plan laid out.

A directory holds `model.yaml` (the backbone's config and one entry of settings per head),
`backbone.arrow`, one `HEAD.arrow` per head (aios weight files, so a quantized model loads the
same way as a float one, memory-mapped), and any files a head keeps itself (a tokenizer).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from torch import nn

from aios.io import load_weights, save_weights, write_atomic
from aios.models.backbone import Backbone, BackboneConfig
from aios.models.backbone_config import MODEL_FILE, read_model_config
from aios.quant import load_quantized


def save_model_dir(
    directory: str | os.PathLike[str],
    backbone: Backbone,
    heads: Mapping[str, tuple[nn.Module, Mapping[str, Any]]],
    *,
    quantizer: Any = None,
    backbone_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the backbone and each head (module, settings); with a `quantizer`, every weight
    matrix it does not keep in 16 bits is stored quantized. `backbone_file`, the weight file
    `backbone` was loaded from, is copied as it is instead (a frozen backbone stays bit-exact,
    int8 included)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if backbone_file is not None:
        data = Path(backbone_file).read_bytes()
        write_atomic(directory / "backbone.arrow", lambda f: f.write(data))
    else:
        _save_module(directory / "backbone.arrow", backbone, quantizer)
    for name, (module, _) in heads.items():
        _save_module(directory / f"{name}.arrow", module, quantizer)
    config = {"backbone": backbone.config.to_dict(),
              "heads": {name: dict(settings) for name, (_, settings) in heads.items()}}
    text = yaml.safe_dump(config, sort_keys=False)
    write_atomic(directory / MODEL_FILE, lambda f: f.write(text.encode()))
    return directory


def load_backbone(directory: str | os.PathLike[str]) -> Backbone:
    config = read_model_config(directory)
    backbone = Backbone(BackboneConfig.from_dict(config["backbone"]))
    return load_module(Path(directory) / "backbone.arrow", backbone)


def load_float_backbone(directory: str | os.PathLike[str]) -> Backbone:
    """The backbone with plain float weights (int8 ones dequantized), ready to train."""
    config = read_model_config(directory)
    backbone = Backbone(BackboneConfig.from_dict(config["backbone"]))
    return load_float_module(Path(directory) / "backbone.arrow", backbone)


def load_float_module(path: Path, module: nn.Module) -> nn.Module:
    """Load a weight file into `module` as float tensors (training and evaluation)."""
    import torch

    from aios.models.backbone_numpy import load_arrays

    arrays = load_arrays(path)
    module.load_state_dict({name: torch.from_numpy(value) for name, value in arrays.items()})
    return module.eval()


def load_module(path: Path, module: nn.Module) -> nn.Module:
    """Load a weight file into `module` (quantized matrices become quantized linears)."""
    return load_quantized(module, load_weights(path)).eval()


def _save_module(path: Path, module: nn.Module, quantizer: Any) -> None:
    # Only linear layers run quantized (QuantizedLinear); embeddings and the rest stay float.
    linear_weights = {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    tensors: dict[str, Any] = {}
    for name, value in module.state_dict().items():
        array = value.detach().cpu().float().numpy().astype(np.float32)
        if quantizer is not None and name in linear_weights and not quantizer.keeps(name, array):
            tensors[name] = quantizer.quantize(array, name=name)
        else:
            tensors[name] = array
    save_weights(path, tensors)
