"""One store shared by threads (a server's requests) loses nothing and searches a consistent
state: threaded adds, updates, deletes, searches, flushes and compactions checked against a
single-threaded model of the same operations, on every backend."""

import threading

import numpy as np
import pytest

from aios.memory import StoreError

from .conftest import unit_rows

DIM = 16
BASE = 300


def run_threads(targets):
    errors: list[BaseException] = []

    def guard(target):
        def run():
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guard(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_threaded_changes_searches_and_compactions_match_a_sequential_model(open_store):
    store = open_store(dim=DIM, flush_rows=40)
    base_vectors = unit_rows(BASE, DIM, seed=1)
    base_ids = [f"base-{i}" for i in range(BASE)]
    store.add(embeddings=base_vectors, ids=base_ids, contents="base")
    store.flush()
    models: list[dict[str, str]] = [{} for _ in range(4)]
    done = threading.Event()

    def writer(t):
        def run():
            rng = np.random.default_rng(t)
            model = models[t]
            for n in range(60):
                ids = [f"w{t}-{n}-{j}" for j in range(3)]
                store.add(embeddings=unit_rows(3, DIM, seed=1000 * t + n), ids=ids,
                          contents=f"v0 {t}")
                model.update(dict.fromkeys(ids, f"v0 {t}"))
                live = sorted(model)
                if n % 3 == 1:
                    victim = live[int(rng.integers(len(live)))]
                    store.update(embeddings=unit_rows(1, DIM, seed=7)[0], ids=[victim],
                                 contents=f"v{n} {t}")
                    model[victim] = f"v{n} {t}"
                if n % 4 == 2:
                    victim = live[int(rng.integers(len(live)))]
                    assert store.delete(victim) == 1
                    del model[victim]
        return run

    def compactor():
        while not done.is_set():
            store.compact()
            store.flush()

    def searcher(seed):
        def run():
            rng = np.random.default_rng(seed)
            while not done.is_set():
                i = int(rng.integers(BASE))
                found = store.search(base_vectors[i], k=5, metric="cosine")
                assert len(set(found.ids)) == len(found.ids), "duplicate ids in one result"
                assert found.ids[0] == base_ids[i], "a record that was never deleted vanished"
                everything = store.search(base_vectors[i], k=10**9, metric="dot")
                assert len(set(everything.ids)) == len(everything.ids) >= BASE
                assert store.get(base_ids[i]).column("content").to_pylist() == ["base"]
        return run

    writers = [writer(t) for t in range(4)]

    def writers_then_stop():
        try:
            run_threads(writers)
        finally:
            done.set()

    run_threads([writers_then_stop, compactor, searcher(1), searcher(2)])

    expected = {**dict.fromkeys(base_ids, "base")}
    for model in models:
        expected.update(model)

    def state(s):
        table = s.to_table()
        return dict(zip(table.column("id").to_pylist(), table.column("content").to_pylist(),
                        strict=True))

    assert state(store) == expected
    assert store.count() == len(expected)
    store.close()
    assert state(open_store(store.path, dim=DIM)) == expected  # and durably so


def test_searches_beside_a_closing_store_finish_or_say_it_is_closed(open_store):
    store = open_store(dim=DIM)
    store.add(embeddings=unit_rows(200, DIM), ids=[f"r{i}" for i in range(200)])
    outcomes: list[str] = []

    def search():
        for _ in range(50):
            try:
                found = store.search(unit_rows(1, DIM)[0], k=3)
                outcomes.append("ok" if len(found.ids) == 3 else "short")
            except StoreError:
                outcomes.append("closed")

    def close():
        store.close()

    run_threads([search, search, close])
    assert set(outcomes) <= {"ok", "closed"} and outcomes.count("closed") > 0


@pytest.mark.parametrize("k", [10**9, 2**62])
def test_a_huge_k_is_capped_by_the_record_count(open_store, k):
    store = open_store(dim=DIM)
    store.add(embeddings=unit_rows(7, DIM), ids=[f"r{i}" for i in range(7)])
    store.flush()
    store.add(embeddings=unit_rows(2, DIM, seed=3), ids=["x", "y"])
    for precision in ("f32", "f16", "i8"):
        found = store.search(unit_rows(1, DIM)[0], k=k, precision=precision)
        assert sorted(found.ids) == sorted([f"r{i}" for i in range(7)] + ["x", "y"])
