"""Exact search: agreement with brute force, filters before ranking, batches, precisions."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from aios.memory import Filter, InvalidRecordError
from memory.conftest import unit_rows


def brute_force(x, q, metric, k):
    if metric == "dot":
        s = x @ q
    elif metric == "cosine":
        s = x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    else:
        s = -((x - q) ** 2).sum(1)
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_search_equals_brute_force(open_store, metric):
    store = open_store(dim=16, flush_rows=700)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    store.add(embeddings=x, ids=[str(i) for i in range(2000)])  # two segments + the log
    store.add(embeddings=x[:1] * 3, ids=["late"])
    q = rng.normal(size=16).astype(np.float32)
    order, scores = brute_force(np.vstack([x, x[:1] * 3]), q, metric, 10)
    result = store.search(q, k=10, metric=metric)
    ids = [str(i) if i < 2000 else "late" for i in order]
    assert result.ids == ids
    expected = -scores if metric == "l2" else scores
    np.testing.assert_allclose(result.scores, expected, rtol=1e-4, atol=1e-4)
    assert result.records.column("id").to_pylist() == ids


def test_a_batch_of_queries_returns_one_result_per_query(open_store):
    store = open_store()
    x = unit_rows(300)
    store.add(embeddings=x)
    batch = store.search(x[:16], k=4)
    assert len(batch) == 16
    for q, result in zip(x[:16], batch, strict=True):
        assert result.ids == store.search(q, k=4).ids


def test_the_filter_applies_before_ranking_so_k_matches_come_back(open_store):
    store = open_store()
    x = unit_rows(1000)
    category = ["rare" if i % 100 == 0 else "common" for i in range(1000)]
    store.add(embeddings=x, category=category, ids=[str(i) for i in range(1000)])
    result = store.search(x[1], k=10, filter={"category": "rare"})
    assert sorted(result.ids, key=int) == [str(i) for i in range(0, 1000, 100)]


def test_filters_by_modality_source_time_and_quality_combine(open_store):
    store = open_store()
    now = datetime.now(timezone.utc)
    x = unit_rows(4)
    store.add(embeddings=x, ids=["t", "i", "old", "low"],
              modality=["text", "image", "text", "text"], source="web",
              quality=[0.9, 0.9, 0.9, 0.1],
              timestamps=[now, now, now - timedelta(days=30), now])
    found = store.search(x[0], k=4, filter=Filter(modality="text", source=["web"],
                                                  since=now - timedelta(days=1),
                                                  min_quality=0.5))
    assert found.ids == ["t"]
    assert store.search(x[0], k=4, filter={"until": now - timedelta(days=1)}).ids == ["old"]


def test_deleted_records_are_never_found(open_store):
    store = open_store(flush_rows=50)
    x = unit_rows(100)
    store.add(embeddings=x, ids=[str(i) for i in range(100)])
    store.delete(["7", "99"])
    assert not {"7", "99"} & set(store.search(x[7], k=100).ids)
    assert len(store.search(x[7], k=100)) == 98


def test_the_threshold_keeps_only_results_at_least_that_similar(open_store):
    store = open_store()
    x = unit_rows(200)
    store.add(embeddings=x)
    result = store.search(x[0], k=200, threshold=0.5)
    expected = int(((x @ x[0]) >= 0.5).sum())
    assert 1 <= len(result) == expected
    assert (result.scores >= 0.5).all()


def test_an_l2_threshold_is_a_largest_distance(open_store):
    store = open_store()
    x = unit_rows(200)
    store.add(embeddings=x)
    result = store.search(x[0], k=200, metric="l2", threshold=1.0)
    assert len(result) == int((((x - x[0]) ** 2).sum(1) <= 1.0).sum())
    assert (result.scores <= 1.0).all() and result.scores[0] == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("precision", ["f16", "i8"])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_quantized_scans_rescore_exactly_and_find_the_exact_top_10(open_store, precision,
                                                                    metric):
    store = open_store(dim=32)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    store.add(embeddings=x)
    queries = rng.normal(size=(8, 32)).astype(np.float32)
    exact_results = store.search(queries, k=10, metric=metric)
    fast_results = store.search(queries, k=10, metric=metric, precision=precision)
    for exact, fast in zip(exact_results, fast_results, strict=True):
        assert fast.ids == exact.ids
        np.testing.assert_allclose(fast.scores, exact.scores, rtol=1e-5, atol=1e-5)


def test_fewer_records_than_k_returns_them_all(open_store):
    store = open_store()
    store.add(embeddings=unit_rows(3))
    assert len(store.search(unit_rows(1)[0], k=10)) == 3


def test_an_empty_store_returns_an_empty_result(open_store):
    result = open_store().search(np.ones(8), k=5)
    assert result.ids == [] and len(result.scores) == 0 and result.records.num_rows == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"query": np.ones(7)}, "shape \\(7\\)"),
    ({"query": np.zeros(8)}, "zero vector"),
    ({"query": np.full(8, np.nan)}, "NaN"),
    ({"query": np.ones(8), "k": 0}, "k must be a positive integer"),
    ({"query": np.ones(8), "metric": "hamming"}, "metric 'hamming'"),
    ({"query": np.ones(8), "precision": "i4"}, "precision 'i4'"),
    ({"query": np.ones(8), "filter": {"colour": "red"}}, "unknown filter keys"),
])
def test_bad_searches_are_refused_with_the_problem_named(open_store, kwargs, message):
    store = open_store()
    store.add(embeddings=unit_rows(3))
    with pytest.raises(InvalidRecordError, match=message):
        store.search(**kwargs)
