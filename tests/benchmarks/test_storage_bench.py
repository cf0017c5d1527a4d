"""The storage benchmark's parts (`benchmarks/storage.py`): the exact answers it judges recall
by, the data set it shares with its child processes, and a child's measurements."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))
_spec = importlib.util.spec_from_file_location("storage_bench", _DIR / "storage.py")
storage_bench = importlib.util.module_from_spec(_spec)
sys.modules["storage_bench"] = storage_bench  # dataclasses look their module up there
_spec.loader.exec_module(storage_bench)

N, DIM = 3000, 24


@pytest.fixture(scope="module")
def data_set(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("storage-bench")
    rate = storage_bench.build_data_set(workdir, N, DIM)
    return workdir, rate


def test_exact_top_k_is_the_k_best_inner_products_best_first():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((70_000, 8)).astype(np.float32)  # spans two scoring blocks
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    got = storage_bench.exact_top_k(data, queries)
    want = np.argsort(-(data.astype(np.float64) @ queries.T.astype(np.float64)), axis=0)[:10].T
    np.testing.assert_array_equal(got, want)


def test_the_data_set_is_written_once_for_the_children_to_map(data_set):
    workdir, rate = data_set
    data = np.load(workdir / "data.npy", mmap_mode="r")
    queries = np.load(workdir / "queries.npy")
    assert data.shape == (N, DIM) and queries.shape == (storage_bench.QUERY_POOL, DIM)
    np.testing.assert_array_equal(np.load(workdir / "exact.npy"),
                                  storage_bench.exact_top_k(data, queries))
    assert rate > 0
    # The quantized copies are persisted, so no child rebuilds them.
    assert sorted(p.suffixes[-2] for p in (workdir / "store").glob("*.*.arrow")) == [".f16", ".i8"]


@pytest.mark.parametrize("name", ["native", "native-batch", "native-i8", "numpy", "reference"])
def test_a_child_times_its_calls_and_reports_recall(data_set, name):
    workdir, _ = data_set
    result = storage_bench.run_worker(name, workdir, calls=3, round_index=1)
    batch = storage_bench.CANDIDATES[name].batch
    calls = 3 if batch == 1 else 2
    assert len(result["seconds"]) == calls and all(s > 0 for s in result["seconds"])
    assert len(result["recall"]) == calls * batch
    # Exact searches find the exact top-10; the int8 scan re-scores 80 candidates exactly.
    assert np.mean(result["recall"]) >= (0.9 if name == "native-i8" else 1.0)


def test_the_floor_streams_each_copys_bytes(data_set):
    workdir, _ = data_set
    result = storage_bench.run_worker(storage_bench.FLOOR, workdir, calls=2, round_index=0)
    assert set(result["seconds"]) == {"f32", "f16", "i8"}
    assert all(len(v) == 2 for v in result["seconds"].values())


def test_a_child_process_answers_in_json_on_its_last_line(data_set):
    workdir, _ = data_set
    done = subprocess.run([sys.executable, str(_DIR / "storage.py"), "--worker", "native",
                           "--workdir", str(workdir), "--calls", "2"],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["seconds"]) == 2 and result["open_seconds"] >= 0


def test_pooled_samples_and_the_report_table():
    results = {name: {} for name in (storage_bench.FLOOR, "native", "native-i8")}
    for _ in range(2):
        for name in results:
            storage_bench.merge_result(results[name], {
                storage_bench.FLOOR: {"seconds": {"f32": [0.04], "f16": [0.02], "i8": [0.01]}},
                "native": {"seconds": [0.05, 0.06], "recall": [1.0, 1.0], "open_seconds": 0.001},
                "native-i8": {"seconds": [0.02], "recall": [0.9]},
            }[name])
    assert results["native"]["seconds"] == [0.05, 0.06, 0.05, 0.06]
    assert results["native"]["open_seconds"] == [0.001, 0.001]
    text = storage_bench.report(results, 1000, 10, 1234.0)
    native = next(line for line in text.splitlines() if line.startswith("| native f32"))
    assert "55.0 ms" in native and "1.38x" in native and "1.000" in native  # 0.055 / 0.04
    int8 = next(line for line in text.splitlines() if line.startswith("| native int8"))
    assert "2.00x" in int8 and "0.900" in int8  # 0.02 / 0.01
