"""GGUF files: a valid one loads (llama.cpp's Q/K row order undone) and computes the reference
logits; a damaged one, or one with a tensor type aios cannot dequantize, is a `CheckpointError`
naming the problem, found before any library touches the tensor buffers."""

import struct

import numpy as np
import pytest
import torch
from family_nets import LLAMA_CONFIG, hf_dims, hf_names, reference_forward
from gguf_files import write_tiny_llama_gguf

from aios.models.families import CheckpointError, check_gguf, load_pretrained

TOKENS = torch.randint(0, 68, (2, 9), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_llama_gguf(path)


def test_a_llama_gguf_loads_and_matches_the_reference(tiny_gguf):
    path, weights = tiny_gguf
    model = load_pretrained(path)
    assert model.family.name == "llama" and model.source.kind == "gguf"
    with torch.inference_mode():
        ours = model(TOKENS)
    expected = reference_forward(weights, TOKENS, names=hf_names, dims=hf_dims(LLAMA_CONFIG),
                                 pattern="causal")
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    assert model.encode("abc") == [0, 1, 2]


def test_the_structural_check_lists_every_tensor_inside_the_file(tiny_gguf):
    path, _ = tiny_gguf
    summary = check_gguf(path)
    assert summary.architecture == "llama" and summary.version == 3
    assert len(summary.tensors) == 2 + 9 * LLAMA_CONFIG["num_hidden_layers"]
    size = path.stat().st_size
    assert all(t.offset + t.nbytes <= size for t in summary.tensors)
    embed = next(t for t in summary.tensors if t.name == "token_embd.weight")
    assert embed.shape == (48, 70) and embed.type_name == "F32" and embed.nbytes == 48 * 70 * 4


def _damaged(tiny_gguf, tmp_path, change):
    data = bytearray(tiny_gguf[0].read_bytes())
    data = change(data)
    path = tmp_path / "damaged.gguf"
    path.write_bytes(bytes(data))
    return path


def _type_field(data, name):
    at = bytes(data).index(name.encode()) + len(name)
    n_dims = struct.unpack_from("<I", data, at)[0]
    return at + 4 + 8 * n_dims


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d[:-100], "ends at byte .* past the end of the file"),
    (lambda d: d[:200], "the file ends inside"),
    (lambda d: b"GGUX" + d[4:], "is not a GGUF file"),
    (lambda d: d[:4] + struct.pack("<I", 7) + d[8:], "GGUF version 7 is not supported"),
    (lambda d: d[:24] + struct.pack("<Q", 1 << 40) + d[32:], "claims 1099511627776 bytes"),
    (lambda d: d[:8] + struct.pack("<Q", 1 << 62) + d[16:], "claims 4611686018427387904 tensors"),
])
def test_damaged_files_are_refused_by_name(tiny_gguf, tmp_path, change, message):
    path = _damaged(tiny_gguf, tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(path)


def test_an_unsupported_tensor_type_names_the_tensor_and_the_fix(tiny_gguf, tmp_path):
    def to_q8_1(d):
        at = _type_field(d, "blk.1.ffn_up.weight")
        d[at:at + 4] = struct.pack("<I", 9)  # GGML type 9 is Q8_1: no dequantizer exists
        return d

    path = _damaged(tiny_gguf, tmp_path, to_q8_1)
    with pytest.raises(CheckpointError, match="'blk.1.ffn_up.weight' is stored as Q8_1, which "
                                              "aios cannot dequantize; re-quantize"):
        load_pretrained(path)


def test_random_byte_flips_in_the_header_are_errors_not_crashes(tiny_gguf, tmp_path):
    header_end = check_gguf(tiny_gguf[0]).tensors[0].offset
    rng = np.random.default_rng(0)
    for trial in range(40):
        def flip(d, rng=rng):
            for at in rng.integers(0, header_end, size=3):
                d[at] ^= int(rng.integers(1, 256))
            return d

        path = _damaged(tiny_gguf, tmp_path, flip)
        try:
            check_gguf(path)
        except CheckpointError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"trial {trial}: {type(exc).__name__}: {exc}")
