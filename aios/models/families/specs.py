"""The checkpoint families aios loads, each as data: how to recognise its `config.json`, which
`transformers` architecture runs it, how its tensor names map onto that architecture's, how it
attends, and whether its logits are shifted.

Why `transformers`' own classes: Llama and Qwen2 are written, tested and kept there; a second
copy here would drift. A diffusion LM built on one of them differs only in its attention mask
(bidirectional) and in where it reads its predictions, so a family is a small record, not code.
MDLM's DiT has no `transformers` class; its record points at the network written in `mdlm`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aios.models.families.errors import CheckpointError

#: Keys of a published config that are not architecture settings.
_NOT_SETTINGS = ("architectures", "auto_map", "model_type", "torch_dtype", "dtype",
                 "transformers_version", "_name_or_path")


@dataclass(frozen=True)
class Family:
    """One checkpoint family; `published_name` maps a `transformers` tensor name to the name the
    checkpoint files use (identity for layouts that already match)."""

    name: str
    summary: str
    model_type: str  #: the `transformers` architecture that runs it
    attention: str  #: the default attention pattern (see `masks.PATTERNS`)
    shift_logits: bool  #: position i's prediction sits at logits[i - 1] (Dream)
    diffusion: bool  #: a masked-diffusion model (has a mask token) rather than an AR one
    settings: Callable[[dict[str, Any], Any], dict[str, Any]] = field(repr=False)
    published_name: Callable[[str], str | None] = field(repr=False, default=lambda n: n)
    #: Builds the network itself, for an architecture `transformers` has no class for (MDLM):
    #: ``(config.json as a dict, TensorFiles, config path, dtype) -> network``; None = the
    #: `transformers` class of `model_type`.
    build_network: Callable[..., Any] | None = field(repr=False, default=None)
    #: MDLM's SUBS output: the mask token never predicted, unmasked positions carried over.
    carry_over: bool = False
    #: Without `mask_token_id` in config.json, the mask is the vocabulary's last token (MDLM).
    mask_is_last: bool = False

    def mask_token_id(self, config: dict[str, Any]) -> int | None:
        if not self.diffusion:
            return None
        value = config.get("mask_token_id")
        if value is None and self.mask_is_last and "vocab_size" in config:
            return int(config["vocab_size"]) - 1
        return None if value is None else int(value)


def _hf_settings(config: dict[str, Any], tensors: Any) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _NOT_SETTINGS}


def _llada_settings(config: dict[str, Any], tensors: Any) -> dict[str, Any]:
    missing = [k for k in ("d_model", "n_layers", "n_heads") if k not in config]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}, which a LLaDA checkpoint has; use "
                              "the config.json that came with the weights")
    for flag in ("include_bias", "attention_layer_norm", "include_qkv_bias"):
        if config.get(flag):
            raise CheckpointError(f"config.json: `{flag}: true` is not a LLaDA setting aios "
                                  "loads (LLaDA's released models have it false)")
    hidden = config.get("mlp_hidden_size")
    ff = "model.transformer.blocks.0.ff_proj.weight"
    if tensors is not None and ff in tensors.shapes:
        hidden = tensors.shapes[ff][0]
    if hidden is None:
        raise CheckpointError("config.json lacks mlp_hidden_size and the weights lack "
                              f"{ff!r}; the checkpoint is incomplete")
    vocab = config.get("embedding_size") or config.get("vocab_size")
    wte = "model.transformer.wte.weight"
    if tensors is not None and wte in tensors.shapes:
        vocab = tensors.shapes[wte][0]
    heads = int(config["n_heads"])
    return {
        "hidden_size": int(config["d_model"]), "intermediate_size": int(hidden),
        "num_hidden_layers": int(config["n_layers"]), "num_attention_heads": heads,
        "num_key_value_heads": int(config.get("n_kv_heads") or heads),
        "vocab_size": int(vocab), "rms_norm_eps": float(config.get("rms_norm_eps", 1e-5)),
        "rope_theta": float(config.get("rope_theta", 10000.0)),
        "max_position_embeddings": int(config.get("max_sequence_length", 4096)),
        "tie_word_embeddings": bool(config.get("weight_tying", False)),
        "attention_bias": False, "mlp_bias": False,
    }


_LLADA_LAYER = {
    "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
    "mlp.down_proj": "ff_out", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ff_norm",
}
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")


def _llada_name(name: str) -> str | None:
    """LLaDA's OLMo-derived names (`model.transformer.blocks.N.ff_proj.weight`, ...)."""
    fixed = {"model.embed_tokens.weight": "model.transformer.wte.weight",
             "model.norm.weight": "model.transformer.ln_f.weight",
             "lm_head.weight": "model.transformer.ff_out.weight"}
    if name in fixed:
        return fixed[name]
    match = _LAYER_NAME.fullmatch(name)
    if match and match.group(2) in _LLADA_LAYER:
        return f"model.transformer.blocks.{match.group(1)}.{_LLADA_LAYER[match.group(2)]}.weight"
    return None


def _mdlm_network(published: dict[str, Any], tensors: Any, source: Any, dtype: Any) -> Any:
    from aios.models.families.mdlm import load_network

    return load_network(published, tensors, source, dtype)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "Llama-architecture autoregressive LM (SmolLM2, Llama, TinyLlama)",
           "llama", "causal", False, False, _hf_settings),
    Family("qwen2", "Qwen2-architecture autoregressive LM", "qwen2", "causal", False, False,
           _hf_settings),
    Family("dream", "Dream masked-diffusion LM (Qwen2 architecture, bidirectional, logits "
           "shifted by one)", "qwen2", "bidirectional", True, True, _hf_settings),
    Family("llada", "LLaDA masked-diffusion LM (Llama architecture, bidirectional, OLMo "
           "tensor names)", "llama", "bidirectional", False, True, _llada_settings,
           _llada_name),
    Family("mdlm", "MDLM masked-diffusion LM (DiT with adaLN noise conditioning, GPT-2 "
           "tokenizer; aios's own network)", "mdlm", "bidirectional", False, True,
           _hf_settings, build_network=_mdlm_network, carry_over=True, mask_is_last=True),
)}


def detect_family(config: dict[str, Any], source: str) -> Family:
    """The family a `config.json` belongs to, by its `model_type` and `architectures`."""
    model_type = str(config.get("model_type", "")).lower()
    architectures = [str(a).lower() for a in config.get("architectures") or []]
    if model_type == "llada" or any("llada" in a for a in architectures):
        return FAMILIES["llada"]
    if model_type == "dream" or any("dream" in a for a in architectures):
        return FAMILIES["dream"]
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if not model_type and {"n_layers", "d_model"} <= set(config):
        return FAMILIES["llada"]
    known = ", ".join(sorted(FAMILIES))
    raise CheckpointError(f"{source}: unknown architecture (model_type {model_type!r}, "
                          f"architectures {config.get('architectures')}); aios loads {known}: "
                          "pass family=NAME if the checkpoint is one of these under another name")


__all__ = ["FAMILIES", "Family", "detect_family"]
