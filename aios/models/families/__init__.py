"""Pretrained checkpoint families (LLaDA, Dream, Llama and Qwen2 AR models) run through the
`transformers` modeling classes with causal, bidirectional or block-causal attention, and MDLM
through its DiT written here (`mdlm`), loaded from a Hugging Face directory, a GGUF file or an
ArrowQuant directory made once from either."""

from aios.models.families.arrowquant import (
    MARKER,
    cache_dir,
    cached_conversion,
    convert_pretrained,
    load_arrowquant,
)
from aios.models.families.errors import CheckpointError
from aios.models.families.gguf_check import GGUFSummary, check_gguf
from aios.models.families.loading import load_pretrained
from aios.models.families.masks import PATTERNS, attention_mask
from aios.models.families.pretrained import PretrainedModel
from aios.models.families.specs import FAMILIES, Family, detect_family

__all__ = ["FAMILIES", "MARKER", "PATTERNS", "CheckpointError", "Family", "GGUFSummary",
           "PretrainedModel", "attention_mask", "cache_dir", "cached_conversion",
           "check_gguf", "convert_pretrained", "detect_family", "load_arrowquant",
           "load_pretrained"]
