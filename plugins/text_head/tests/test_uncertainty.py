import json

import numpy as np
import pytest
from aios_text.inference import load_array_text_model
from aios_text.uncertainty import (
    CALIBRATION_FILE,
    Calibration,
    UncertaintyEstimator,
    calibrate,
    roc_auc,
    token_bytes,
)
from micro_model import base_text, trained_model

from aios.errors import AiosError

STRANGE = "zq xv kj 9w #! qq vv zz pp 0x7f ~~ jj ww yy kk"


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    model, tokenizer, _ = load_array_text_model(trained_model(tmp_path_factory))
    stream = np.array(tokenizer.encode(base_text(600, seed=1000)))
    calibration = calibrate(model, tokenizer, stream, windows=8, progress=False)
    return UncertaintyEstimator(model, tokenizer, calibration)


def test_text_of_the_training_distribution_scores_about_one(estimator):
    assert 0.7 < estimator.score(base_text(30, seed=2000)) < 1.3


def test_text_unlike_the_training_text_scores_above_the_threshold(estimator):
    assert estimator.score(STRANGE) > 1.5


def test_a_text_gets_the_same_score_every_time(estimator):
    assert estimator.score(STRANGE) == estimator.score(STRANGE)


def test_a_text_of_one_token_is_refused(estimator):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        estimator.score_ids([5])


def test_token_bytes_counts_the_bytes_each_token_stands_for(estimator):
    tokenizer = estimator.tokenizer
    sizes = token_bytes(tokenizer)
    ids = tokenizer.encode("the cat sat")
    assert sizes[ids].sum() == len(b"the cat sat")


def test_a_calibration_saves_and_loads_back_equal(estimator, tmp_path):
    estimator.calibration.save(tmp_path)
    assert Calibration.load(tmp_path) == estimator.calibration


def test_a_missing_calibration_says_how_to_make_one(tmp_path):
    with pytest.raises(AiosError, match="aios evolve --calibrate"):
        Calibration.load(tmp_path)


def test_a_calibration_with_a_wrong_table_is_refused(estimator, tmp_path):
    path = estimator.calibration.save(tmp_path)
    data = json.loads(path.read_text())
    data["expected"][0] = data["expected"][0][:2]
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(AiosError, match="invalid table"):
        Calibration.load(tmp_path)


def test_roc_auc_agrees_with_counting_the_ordered_pairs():
    negatives, positives = [0.1, 0.4, 0.35, 0.8], [0.3, 0.9, 0.4]
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    assert roc_auc(negatives, positives) == pytest.approx(sum(pairs) / len(pairs))
    assert roc_auc([0, 1], [2, 3]) == 1.0
