"""Metrics against values worked out by hand on toy predictions."""

from __future__ import annotations

import numpy as np
import pytest

from asl_core.engine.metrics import (classification_metrics, confusion, confusion_normalized, delta_confusion, flip_table,
                              knn_accuracy, mcnemar, separability, within_between_ratio)

Y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
A = np.array([0, 0, 1, 1, 1, 0, 2, 2])  # wrong at rows 2 and 5
B = np.array([0, 1, 1, 1, 1, 1, 2, 0])  # wrong at rows 1, 2 and 7


def test_confusions_and_delta():
    cm_a, cm_b = confusion(Y, A, 3), confusion(Y, B, 3)
    np.testing.assert_array_equal(cm_a, [[2, 1, 0], [1, 2, 0], [0, 0, 2]])
    np.testing.assert_array_equal(cm_b, [[1, 2, 0], [0, 3, 0], [1, 0, 1]])
    np.testing.assert_array_equal(delta_confusion(cm_a, cm_b), [[-1, 1, 0], [-1, 1, 0], [1, 0, -1]])
    np.testing.assert_allclose(confusion_normalized(cm_a)[0], [2 / 3, 1 / 3, 0])
    np.testing.assert_array_equal(confusion_normalized(np.zeros((2, 2))), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        delta_confusion(np.zeros((2, 2)), np.zeros((3, 3)))
    m = classification_metrics(Y, A, 3)
    assert m["accuracy"] == 0.75 and m["per_class_recall"] == [2 / 3, 2 / 3, 1.0]


def test_flip_table():
    t = flip_table(Y, A, B, 3)
    assert t["right_to_wrong"] == [1, 0, 1]  # rows 1 and 7
    assert t["wrong_to_right"] == [0, 1, 0]  # row 5
    assert t["both_wrong"] == [1, 0, 0] and t["both_right"] == [1, 2, 1] and t["n"] == [3, 3, 2]
    assert t["net"] == [-1, 1, -1]


def test_mcnemar_exact():
    r = mcnemar(Y, A, B)
    assert (r["b"], r["c"]) == (2, 1) and r["pvalue"] == pytest.approx(1.0)
    y = np.zeros(12, int)
    a = np.zeros(12, int)
    b = np.array([1] * 5 + [0] * 7)  # five right->wrong, none the other way
    r = mcnemar(y, a, b)
    assert (r["b"], r["c"], r["statistic"]) == (5, 0, 0.0)
    assert r["pvalue"] == pytest.approx(2 * 0.5**5)  # 0.0625
    assert mcnemar(y, a, a)["pvalue"] == 1.0


def test_knn_and_distance_ratio_by_hand():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    assert knn_accuracy(X, y, k=1) == 1.0
    # within: |0-1| = |10-11| = 1; between: 10, 11, 9, 10 -> mean 10
    assert within_between_ratio(X, y) == pytest.approx(0.1)
    assert within_between_ratio(X, y, chunk=1) == pytest.approx(0.1)
    # k=3 leave-one-out: each point sees 1 same + 2 other -> always wrong
    assert knn_accuracy(X, y, k=3) == 0.0


def test_separability_subsample_is_stated():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 100)
    X = rng.normal(size=(300, 8)) + 5 * y[:, None]
    full = separability(X, y)
    assert full["n_used"] == 300 and full["note"] == "" and full["knn_accuracy"] > 0.95
    assert full["silhouette"] > 0.5 and full["within_between_ratio"] < 0.5
    sub = separability(X, y, max_samples=60)
    assert sub["n_used"] == 60 and "60 of 300" in sub["note"]
    assert sub["davies_bouldin"] == pytest.approx(full["davies_bouldin"])  # always on every sample
    one = separability(X[:10], np.zeros(10, int))
    assert np.isnan(one["silhouette"]) and np.isnan(one["davies_bouldin"])


@pytest.mark.parametrize("n, d, k", [(40, 6, 3), (301, 64, 5), (1200, 512, 7)])
def test_trustworthiness_equals_scikit_learn(n, d, k):
    """The chunked rank count gives scikit-learn's trustworthiness exactly (float64 inputs;
    chunk boundaries inside the data)."""
    from sklearn.manifold import trustworthiness as reference

    from asl_core.engine.metrics import trustworthiness

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d))
    E = X[:, :2] + rng.normal(scale=0.7, size=(n, 2))
    assert trustworthiness(X, E, k, chunk=97) == reference(X, E, n_neighbors=k)
    assert trustworthiness(X, X[:, :2], k) > trustworthiness(X, rng.normal(size=(n, 2)), k)


def test_within_between_ratio_equals_the_pairwise_definition():
    """The BLAS-product distances give the ratio of mean pair distances computed pair by pair."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 700)
    X = rng.normal(size=(700, 40)) + y[:, None] * 0.4
    d = cdist(X, X)
    same = y[:, None] == y[None, :]
    expected = (d[same].sum() / (same.sum() - len(X))) / (d[~same].sum() / (~same).sum())
    assert within_between_ratio(X, y, chunk=128) == pytest.approx(expected, rel=1e-9)
