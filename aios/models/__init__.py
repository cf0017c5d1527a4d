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
    # A Llama-architecture network in NumPy over an ArrowQuant directory (no torch).
    "llama_numpy": ("ArrayLlama",),
    "pretrained_layout": ("MARKER", "WEIGHTS", "cache_dir", "read_marker"),
    "lora": (
        "LoRALinear",
        "add_lora",
        "lora_tensors",
    ),
    "sidenet": (
        "add_side_branches",
        "side_tensors",
    ),
    # Pretrained checkpoint families (LLaDA, Dream, Llama/Qwen2 AR) through transformers.
    "families": (
        "FAMILIES",
        "CheckpointError",
        "Family",
        "PretrainedModel",
        "attention_mask",
        "cached_conversion",
        "check_gguf",
        "convert_pretrained",
        "detect_family",
        "load_arrowquant",
        "load_pretrained",
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
    "FAMILIES",
    "MARKER",
    "MODEL_FILE",
    "WEIGHTS",
    "ArrayBackbone",
    "ArrayKVCache",
    "ArrayLlama",
    "Backbone",
    "BackboneConfig",
    "CheckpointError",
    "ClassConditionalHead",
    "ContinuousDiffusionModel",
    "ContinuousHead",
    "Family",
    "GaussianDiffusionTask",
    "KVCache",
    "LoRALinear",
    "PretrainedModel",
    "add_lora",
    "add_side_branches",
    "attention_mask",
    "cache_dir",
    "cached_conversion",
    "check_gguf",
    "content_hash",
    "convert_pretrained",
    "detect_family",
    "free_slot",
    "load_arrays",
    "load_arrowquant",
    "load_backbone",
    "load_continuous_model",
    "load_float_backbone",
    "load_float_module",
    "load_module",
    "load_pretrained",
    "lora_tensors",
    "read_marker",
    "read_model_config",
    "recorded_slots",
    "save_continuous_model",
    "save_model_dir",
    "side_tensors",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
