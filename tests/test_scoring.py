"""The Fréchet distance and the small classifier used to score generated images and audio."""

import numpy as np
import pytest

from aios.training.scoring import Classifier, frechet_distance, train_classifier


def test_a_set_is_at_distance_zero_from_itself():
    x = np.random.default_rng(0).normal(size=(200, 5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_the_distance_of_two_gaussians_matches_the_closed_form():
    # Diagonal covariances: d = |mu1 - mu2|^2 + sum (s1 - s2)^2 over the standard deviations.
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (200_000, 3))
    b = rng.normal(0.5, 2.0, (200_000, 3))
    assert frechet_distance(a, b) == pytest.approx(3 * 0.25 + 3 * 1.0, rel=0.02)


def test_the_distance_agrees_with_scipys_matrix_square_root():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 1.0
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_mismatched_features_are_refused():
    with pytest.raises(ValueError, match="of one dim"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least two examples"):
        frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))


def bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 pictures of a horizontal (class 0) or vertical (class 1) bar in noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    x = rng.normal(0, 0.3, (count, 8, 8)).astype(np.float32)
    where = rng.integers(0, 8, count)
    for i in range(count):
        if labels[i]:
            x[i, :, where[i]] += 2
        else:
            x[i, where[i], :] += 2
    return x, labels


@pytest.fixture(scope="module")
def classifier():
    x, y = bars(600, 0)
    return train_classifier(x, y, ["horizontal", "vertical"], epochs=3, batch_size=32,
                            progress=False)


def test_the_classifier_learns_a_separable_task(classifier):
    x, y = bars(200, 1)
    assert classifier.accuracy(x, y) > 0.95


def test_features_are_the_64_wide_penultimate_layer(classifier):
    assert classifier.features(bars(5, 2)[0]).shape == (5, 64)


def test_a_saved_classifier_predicts_the_same(classifier, tmp_path):
    classifier.save(tmp_path, note="x")
    loaded = Classifier.load(tmp_path)
    x, _ = bars(50, 3)
    np.testing.assert_array_equal(loaded.predict(x), classifier.predict(x))
    assert loaded.classes == ["horizontal", "vertical"]


def test_score_reports_accuracy_and_distance(classifier):
    x, y = bars(100, 4)
    real = classifier.features(bars(100, 5)[0])
    scores = classifier.score(real, x, y)
    assert scores["accuracy"] > 0.95 and scores["frechet"] >= 0


def test_inputs_of_the_wrong_size_are_refused(classifier):
    with pytest.raises(ValueError, match=r"\(count, 8, 8\)"):
        classifier.predict(np.zeros((2, 6, 6), np.float32))
