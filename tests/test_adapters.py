import numpy as np
import pytest

from aios.errors import AiosError, WeightFileError
from aios.evolve.adapters import Adapter, AdapterInfo, AdapterStore, merge_lora
from aios.io.weights import save_weights


def lora_adapter(name="docs", rank=2, alpha=4.0, out=6, inp=4, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {"blocks.0.attn.out.lora_a": rng.normal(size=(rank, inp)).astype(np.float32),
               "blocks.0.attn.out.lora_b": rng.normal(size=(out, rank)).astype(np.float32)}
    info = AdapterInfo(name, "lora", 2, "/models/m", 2 * rank * (out + inp) // 2,
                       {"rank": rank, "alpha": alpha}, {"new_after": 12.5}, "docs")
    return Adapter(info, tensors)


def test_an_adapter_saves_and_loads_back_by_name(tmp_path):
    store = AdapterStore(tmp_path)
    adapter = lora_adapter()
    store.save(adapter)
    loaded = store.load("docs")
    assert loaded.info == adapter.info
    for key, value in adapter.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[key], value)


def test_adapters_are_listed_by_name_and_deleted(tmp_path):
    store = AdapterStore(tmp_path)
    store.save(lora_adapter("b"))
    store.save(lora_adapter("a"))
    assert [info.name for info in store.list()] == ["a", "b"]
    store.delete("a")
    assert store.names() == ["b"]


def test_an_unknown_adapter_is_refused_with_the_known_ones(tmp_path):
    store = AdapterStore(tmp_path)
    store.save(lora_adapter("docs"))
    with pytest.raises(AiosError, match=r"no adapter 'code'.*adapters there: docs"):
        store.load("code")


def test_an_invalid_adapter_name_is_refused(tmp_path):
    with pytest.raises(AiosError, match="adapter name '../x' is invalid"):
        AdapterStore(tmp_path).path("../x")


def test_a_weight_file_that_is_no_adapter_is_refused(tmp_path):
    save_weights(tmp_path / "model.arrow", {"w": np.zeros(3, np.float32)})
    with pytest.raises(WeightFileError, match="not an adapter"):
        AdapterStore(tmp_path).load("model")


def test_merge_lora_adds_the_scaled_low_rank_product():
    adapter = lora_adapter(rank=2, alpha=4.0)
    w = np.ones((6, 4), np.float32)
    merged = merge_lora({"blocks.0.attn.out.weight": w, "other": w}, adapter, scale=0.5)
    a = adapter.tensors["blocks.0.attn.out.lora_a"]
    b = adapter.tensors["blocks.0.attn.out.lora_b"]
    np.testing.assert_allclose(merged["blocks.0.attn.out.weight"], w + 0.5 * 2.0 * b @ a,
                               rtol=1e-6)
    assert merged["other"] is w


def test_merge_lora_refuses_an_adapter_of_another_model():
    with pytest.raises(AiosError, match="does not fit layer"):
        merge_lora({"blocks.0.attn.out.weight": np.ones((5, 4), np.float32)}, lora_adapter())
    with pytest.raises(AiosError, match="which this model does not have"):
        merge_lora({"x.weight": np.ones((6, 4), np.float32)}, lora_adapter())
