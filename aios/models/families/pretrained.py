"""Load a pretrained checkpoint (a Hugging Face directory or a GGUF file) into a
`PretrainedModel`: a `transformers` network, its family, its tokenizer, and one `forward` that
runs it causally, bidirectionally or block-causally.

Loading a directory is checked before any weight is read: `config.json` names the family, the
`transformers` network is built on the meta device (no memory) to learn every tensor's
expected name and shape, the safetensors headers are compared against those, and only then is
the network allocated and filled. A GGUF file is validated structurally (`gguf_check`) before
`transformers` dequantizes it.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aios.models.families.errors import CheckpointError
from aios.models.families.hf_directory import TensorFiles, read_config
from aios.models.families.masks import attention_mask, positions_from_padding
from aios.models.families.specs import FAMILIES, Family, detect_family

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedFrom:
    """Where a model came from, kept for caching and messages."""

    path: Path
    kind: str  #: "directory", "gguf" or "arrowquant"


class PretrainedModel(nn.Module):
    """A pretrained LM: ``forward(ids) -> logits`` with the family's attention and logit shift.

    `logits[:, i]` is always the model's distribution for the token AT position i for a
    diffusion family (Dream's one-position shift is undone here) and for the NEXT token for an
    autoregressive one, as each was trained. For MDLM they are SUBS log-probabilities: the
    mask token at -inf, and an unmasked position certain of its own token.
    """

    def __init__(self, network: nn.Module, family: Family, *, tokenizer: Any = None,
                 mask_token_id: int | None = None, source: LoadedFrom | None = None) -> None:
        super().__init__()
        self.network = network
        self.family = family
        self.tokenizer = tokenizer
        self.mask_token_id = mask_token_id
        self.source = source

    @property
    def config(self) -> Any:
        return self.network.config

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        padding: torch.Tensor | None = None,
        attention: str | None = None,
        block_size: int | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(batch, length, vocab)`` for `input_ids` ``(batch, length)``.

        `padding` (``batch x (cached + length)``, 1 = real token) masks padded keys and sets
        position ids; `attention` overrides the family's pattern; `past_key_values` (a
        `transformers` cache) holds earlier positions' keys and values; `sigma` ``(batch,)``
        is the noise level of a time-conditioned MDLM checkpoint.
        """
        out = self.run(input_ids, padding=padding, attention=attention, block_size=block_size,
                       past_key_values=past_key_values, use_cache=use_cache, sigma=sigma)
        return out.logits

    def run(self, input_ids: torch.Tensor, *, padding: torch.Tensor | None = None,
            attention: str | None = None, block_size: int | None = None,
            past_key_values: Any = None, use_cache: bool = False,
            sigma: torch.Tensor | None = None) -> Any:
        """As `forward`, returning the `transformers` output (logits and the cache)."""
        batch, length = input_ids.shape
        cached = 0 if past_key_values is None else past_key_values.get_seq_length()
        keys = cached + length
        mask = attention_mask(attention or self.family.attention, length, keys=keys,
                              padding=padding, block_size=block_size, batch=batch,
                              device=input_ids.device)
        if padding is not None:
            positions = positions_from_padding(padding)[:, cached:]
        else:
            positions = torch.arange(cached, keys, device=input_ids.device).expand(batch, -1)
        extra = {} if past_key_values is None else {self.cache_keyword(): past_key_values}
        if sigma is not None:
            if self.family.build_network is None:
                raise ValueError(f"sigma= is an MDLM input; the {self.family.name} family "
                                 "is not conditioned on the noise level")
            extra["sigma"] = sigma
        out = self.network(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                           use_cache=use_cache, **extra)
        if self.family.shift_logits:
            # Dream predicts token i at position i - 1 (it began as an AR model); the first
            # position has no predecessor and keeps its own logits, as Dream's sampler does.
            out.logits = torch.cat([out.logits[:, :1], out.logits[:, :-1]], dim=1)
        if self.family.carry_over and self.mask_token_id is not None:
            # MDLM's SUBS parameterization (see mdlm.subs_log_probs): log-probabilities
            from aios.models.families.mdlm import subs_log_probs

            out.logits = subs_log_probs(out.logits, input_ids, self.mask_token_id)
        return out

    def cache_keyword(self) -> str:
        # transformers 5.x renamed `past_key_values` to `cache` (the old name still works, with
        # a deprecation warning); use whichever this version's forward declares
        import inspect

        params = inspect.signature(self.network.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def encode(self, text: str) -> list[int]:
        return self._tokenizer().encode(text).ids

    def decode(self, ids: Any) -> str:
        return self._tokenizer().decode([int(i) for i in ids])

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise CheckpointError("this checkpoint came without tokenizer.json; add the "
                                  "tokenizer file of the model to its directory")
        return self.tokenizer


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def load_checkpoint(
    source: str | Path,
    *,
    family: str | None = None,
    dtype: str | torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> PretrainedModel:
    """Load a published checkpoint: a Hugging Face directory or a `.gguf` file, with weights
    in `dtype` on `device` (`load_pretrained` also takes converted ArrowQuant directories)."""
    path = Path(source).expanduser()
    torch_dtype = resolve_dtype(dtype)
    if path.suffix.lower() == ".gguf" or (path.is_file() and _starts_with_gguf(path)):
        model = load_gguf(path, dtype=torch_dtype, family=family)
    else:
        model = load_directory(path, dtype=torch_dtype, family=family)
    return model.to(device).eval()


def load_directory(directory: Path, *, dtype: torch.dtype = torch.float32,
                   family: str | None = None) -> PretrainedModel:
    published = read_config(directory)
    spec = _family(family, published, str(directory / "config.json"))
    tensors = TensorFiles(directory)
    if spec.build_network is not None:  # an architecture transformers has no class for
        network = spec.build_network(published, tensors, directory / "config.json", dtype)
        return PretrainedModel(network, spec, tokenizer=read_tokenizer(directory),
                               mask_token_id=spec.mask_token_id(published),
                               source=LoadedFrom(directory, "directory"))
    config = build_config(spec, published, tensors, source=directory / "config.json")
    expected = expected_shapes(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    optional = {"lm_head.weight"} if tied else set()
    tensors.check({spec.published_name(n) or n: s for n, s in expected.items()},
                  {spec.published_name(n) or n for n in optional})
    state = {}
    for name in expected:
        published_name = spec.published_name(name) or name
        if name in optional and published_name not in tensors.where:
            continue
        state[name] = tensors.get(published_name).to(dtype)
    network = assemble_network(config, state)
    return PretrainedModel(network, spec, tokenizer=read_tokenizer(directory),
                           mask_token_id=spec.mask_token_id(published),
                           source=LoadedFrom(directory, "directory"))


def build_config(spec: Family, published: dict[str, Any], tensors: Any, *, source: Any) -> Any:
    """The `transformers` config of a published config, refused clearly when it does not fit."""
    from transformers import AutoConfig

    settings = spec.settings(published, tensors)
    try:
        config = AutoConfig.for_model(spec.model_type, **settings)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: not a valid {spec.name} config ({exc})") from exc
    heads = config.num_attention_heads
    if config.hidden_size % heads or heads % config.num_key_value_heads:
        raise CheckpointError(
            f"{source}: hidden size {config.hidden_size}, {heads} heads and "
            f"{config.num_key_value_heads} key/value heads do not divide evenly; the config "
            "is damaged")
    config._attn_implementation = "sdpa"
    return config


def expected_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape the network of `config` holds, without allocating it."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        network = AutoModelForCausalLM.from_config(config)
    return {n: tuple(t.shape) for n, t in network.state_dict().items()}


def assemble_network(config: Any, state: dict[str, torch.Tensor]) -> nn.Module:
    """The network of `config` holding the tensors of `state` themselves (no allocation, no
    copy: a memory-mapped or freshly dequantized tensor becomes the parameter). Built on the
    meta device; the buffers computed from the config (rotary frequencies) are recomputed."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        network = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    network.load_state_dict(state, strict=False, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        network.tie_weights()
    for name, module in list(network.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            # rotary embeddings: non-persistent buffers computed from the config
            parent, _, attr = name.rpartition(".")
            rebuilt = type(module)(config=config)
            setattr(network.get_submodule(parent) if parent else network, attr, rebuilt)
    network.requires_grad_(False)  # a loaded pretrained model is for inference
    left = [n for n, t in network.state_dict(keep_vars=True).items() if t.is_meta]
    left += [n for n, b in network.named_buffers() if b.is_meta]
    if left:
        raise CheckpointError(f"no weights for {left[:5]}; the checkpoint is incomplete")
    return network.eval()


def read_tokenizer(directory: Path) -> Any:
    """`tokenizer.json` through the `tokenizers` library, or None when there is none."""
    from tokenizers import Tokenizer

    path = directory / "tokenizer.json"
    if not path.exists():
        return None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises a bare Exception
        raise CheckpointError(f"{path} is not a tokenizers file ({exc}); restore it") from exc


def load_gguf(path: Path, *, dtype: torch.dtype = torch.float32,
              family: str | None = None) -> PretrainedModel:
    """A GGUF file, validated, then dequantized into the `transformers` network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aios.models.families.gguf_check import check_gguf

    summary = check_gguf(path)
    architecture = summary.architecture
    spec = _family(family, {"model_type": architecture}, str(path))
    if spec.name not in ("llama", "qwen2"):
        raise CheckpointError(f"{path}: GGUF architecture {architecture!r} is loaded as "
                              f"{spec.name}, which aios reads only from a directory")
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            network = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=dtype, attn_implementation="sdpa")
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: transformers could not load this GGUF ({exc})") from exc
    return PretrainedModel(network.eval(), spec, tokenizer=tokenizer.backend_tokenizer,
                           source=LoadedFrom(path, "gguf"))


def _starts_with_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


def _family(name: str | None, published: dict[str, Any], source: str) -> Family:
    if name is None:
        return detect_family(published, source)
    if name not in FAMILIES:
        raise CheckpointError(f"unknown family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["LoadedFrom", "PretrainedModel", "assemble_network", "build_config", "expected_shapes",
           "load_checkpoint", "load_directory", "load_gguf", "read_tokenizer", "resolve_dtype"]
