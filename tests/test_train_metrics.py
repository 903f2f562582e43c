"""The evaluation metrics against scikit-learn on fixed examples."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from train.metrics import (averaged_pair_auc, binary_auc, one_vs_rest_auc, pair_cutoffs)


def _example(n=400, seed=3):
    rng = np.random.default_rng(seed)
    area = np.where(rng.random(n) < 0.3, rng.random(n), 0.0)
    score = area + rng.normal(0, 0.4, n)
    score[:20] = np.round(score[:20], 1)  # some ties
    return area, score


def test_averaged_auc_is_the_mean_of_sklearn_over_the_cutoffs():
    area, score = _example()
    cuts = pair_cutoffs(100)
    expected = [roc_auc_score(area > c, score) for c in cuts if 0 < (area > c).sum() < len(area)]
    result = averaged_pair_auc(area, score, n_bootstrap=0)
    assert result.cutoffs_used == len(expected)
    assert result.auc == pytest.approx(np.mean(expected), abs=1e-12)
    assert result.n_pairs == 400 and result.n_abnormal == int((area > 0).sum())
    assert result.n_positive_at_median_cutoff == int((area > 0.5).sum())


def test_cutoffs_are_uniform_strictly_inside_the_unit_interval():
    cuts = pair_cutoffs(100)
    assert len(cuts) == 100 and cuts[0] > 0 and cuts[-1] < 1
    assert np.allclose(np.diff(cuts), 1 / 101)


def test_cutoffs_with_an_empty_class_are_skipped_and_counted():
    area = np.array([0.0, 0.0, 0.0, 0.2, 0.3])   # nothing above 0.3: cutoffs >= 0.3 are skipped
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    result = averaged_pair_auc(area, score, n_bootstrap=0)
    assert result.cutoffs_used == int(np.sum(pair_cutoffs(100) < 0.3))
    assert result.auc == pytest.approx(1.0)


def test_no_abnormal_pair_gives_nan_and_zero_cutoffs():
    result = averaged_pair_auc(np.zeros(10), np.arange(10.0))
    assert math.isnan(result.auc) and result.cutoffs_used == 0
    assert math.isnan(result.ci_low) and result.n_bootstrap == 0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    area, score = _example()
    a = averaged_pair_auc(area, score, n_bootstrap=200, seed=1)
    b = averaged_pair_auc(area, score, n_bootstrap=200, seed=1)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < a.auc < a.ci_high
    groups = np.arange(len(area)) // 4   # four pairs per patient
    g = averaged_pair_auc(area, score, groups=groups, n_bootstrap=200)
    assert g.ci_method == "bootstrap-groups" and g.ci_low < g.auc < g.ci_high


def test_binary_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    score = labels + rng.normal(0, 1, 300)
    result = binary_auc(labels, score, n_bootstrap=100)
    assert result.auc == pytest.approx(roc_auc_score(labels, score))
    assert result.n_positive == labels.sum() and result.ci_low < result.auc < result.ci_high
    assert math.isnan(binary_auc(np.ones(5, int), np.arange(5.0)).auc)
    with pytest.raises(ValueError, match="0 or 1"):
        binary_auc(np.array([0, 2]), np.array([0.1, 0.2]))


def test_one_vs_rest_matches_sklearn_per_class_and_means():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300) + np.eye(3)[labels] * 0.3
    result = one_vs_rest_auc(labels, probs, n_bootstrap=50)
    per = [roc_auc_score(labels == c, probs[:, c]) for c in range(3)]
    for c in range(3):
        assert result[c].auc == pytest.approx(per[c])
    assert result["mean"].auc == pytest.approx(np.mean(per))
    assert result["mean"].ci_low < result["mean"].auc < result["mean"].ci_high
    assert result["mean"].auc == pytest.approx(
        roc_auc_score(labels, probs / probs.sum(1, keepdims=True), multi_class="ovr",
                      average="macro"))


def test_one_vs_rest_leaves_an_absent_class_out_of_the_mean():
    labels = np.array(list("aabbab"))
    probs = np.array([[.8, .1, .1], [.7, .2, .1], [.2, .7, .1], [.3, .6, .1], [.6, .3, .1],
                      [.1, .8, .1]])
    result = one_vs_rest_auc(labels, probs, classes=["a", "b", "c"], n_bootstrap=0)
    assert math.isnan(result["c"].auc)
    assert result["mean"].n_positive == 2 and result["mean"].auc == pytest.approx(1.0)
