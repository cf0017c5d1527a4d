"""Shared networks: the backbone (torch, and its NumPy mirror for inference), the Gaussian head,
LoRA and side networks, and model directories on disk.

Names load on first use, so `from aios.models import ArrayBackbone` does not import torch.
"""

from aios._lazy import lazy_face

_EXPORTS = {
    "backbone": (
        "Backbone",
        "KVCache",
    ),
    "backbone_config": (
        "MODEL_FILE",
        "BackboneConfig",
        "read_model_config",
        "recorded_slots",
        "free_slot",
    ),
    "backbone_numpy": (
        "ArrayBackbone",
        "ArrayKVCache",
        "load_arrays",
        "content_hash",
    ),
    "gaussian": (
        "ContinuousDiffusionModel",
        "ContinuousHead",
        "GaussianDiffusionTask",
        "load_continuous_model",
        "save_continuous_model",
    ),
    "gaussian_numpy": ("ClassConditionalHead",),
    "lora": (
        "add_lora",
        "lora_tensors",
    ),
    "sidenet": (
        "add_side_branches",
        "side_tensors",
    ),
    "model_dir": (
        "load_backbone",
        "load_float_backbone",
        "load_float_module",
        "load_module",
        "save_model_dir",
    ),
}

__all__ = [
    "MODEL_FILE",
    "ArrayBackbone",
    "ArrayKVCache",
    "Backbone",
    "BackboneConfig",
    "ClassConditionalHead",
    "ContinuousDiffusionModel",
    "ContinuousHead",
    "GaussianDiffusionTask",
    "KVCache",
    "add_lora",
    "add_side_branches",
    "content_hash",
    "free_slot",
    "load_arrays",
    "load_backbone",
    "load_continuous_model",
    "load_float_backbone",
    "load_float_module",
    "load_module",
    "lora_tensors",
    "read_model_config",
    "recorded_slots",
    "save_continuous_model",
    "save_model_dir",
    "side_tensors",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
