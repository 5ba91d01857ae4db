"""Analyses between two models (asl_core.engine.between) against direct implementations of their
definitions (METHODS.md section 4)."""

from __future__ import annotations

import numpy as np
import pytest

from asl_core.engine import between as B
from asl_core.engine.metrics import confusion


def direct_cka(x, y):
    """The formula as written: column-centre, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_linear_cka_matches_the_formula_in_any_chunking():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12))
    y = x @ rng.normal(size=(12, 7)) + 0.5 * rng.normal(size=(300, 7))
    for batch in (7, 64, 1000):
        value, how = B.linear_cka(x, y, batch=batch)
        assert how == "exact" and value == pytest.approx(direct_cka(x, y), rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert B.linear_cka(x, 3 * x @ q + 5)[0] == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert B.linear_cka(x, rng.normal(size=(300, 9)))[0] < 0.15


def test_minibatch_cka_estimates_the_same_value(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 10))
    y = np.tanh(x @ rng.normal(size=(10, 6))) + 0.3 * rng.normal(size=(4000, 6))
    monkeypatch.setattr(B, "EXACT_CKA_MAX_DIM", 5)  # force the wide-layer estimator
    value, how = B.linear_cka(x, y, batch=500)
    assert how.startswith("minibatch unbiased HSIC")
    assert value == pytest.approx(direct_cka(x, y), abs=0.03)
    m, used = B.cka_matrix({"a": x, "b": y}, {"a": x, "b": y}, batch=500)
    assert m.shape == (2, 2) and m[0, 0] == pytest.approx(1.0, abs=1e-6) and used == [how]


def test_agreement_and_confused_pairs_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    a = np.array([0, 1, 1, 1, 0, 2, 1, 2])
    b = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    agree = B.agreement_matrix(a, b, 3)
    assert agree.tolist() == [[1, 1, 0], [1, 2, 1], [1, 0, 1]]  # rows: A's prediction; trace: they agree
    pairs = B.confused_pairs(y, a, b, 3)
    first = pairs[0]
    assert (first["true"], first["pred"], first["count_a"], first["count_b"], first["change"]) == (0, 1, 2, 1, -1)
    assert first["rate_a"] == pytest.approx(2 / 3)
    assert {(p["true"], p["pred"]) for p in pairs} == {(0, 1), (1, 0), (2, 1), (2, 0)}
    assert all(p["true"] != p["pred"] for p in pairs)
    assert len(B.confused_pairs(y, a, None, 3, top=2)) == 2 and "change" not in B.confused_pairs(y, a, None, 3)[0]


def test_cluster_order_puts_confused_classes_together():
    rng = np.random.default_rng(2)
    c = 12
    y = np.repeat(np.arange(c), 50)
    pred = y.copy()
    # confused pairs are far apart in index order: (0, 7), (3, 10), (5, 1)
    for t, p in ((0, 7), (3, 10), (5, 1)):
        for src, dst in ((t, p), (p, t)):
            rows = np.flatnonzero(y == src)[:15]
            pred[rows] = dst
    pred[rng.choice(len(y), 5, replace=False)] = rng.integers(0, c, 5)
    order = B.cluster_order(confusion(y, pred, c))
    assert sorted(order) == list(range(c))
    pos = {cls: i for i, cls in enumerate(order)}
    for t, p in ((0, 7), (3, 10), (5, 1)):
        assert abs(pos[t] - pos[p]) == 1


def test_neighbourhood_overlap_is_the_jaccard_of_knn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 5))
    same = B.neighbourhood_overlap(x, 2 * x + 1, k=6)
    np.testing.assert_allclose(same, 1.0)
    other = rng.normal(size=(80, 5))
    got = B.neighbourhood_overlap(x, other, k=6)

    def knn(z, i):
        d = np.linalg.norm(z - z[i], axis=1)
        d[i] = np.inf
        return set(np.argsort(d, kind="stable")[:6].tolist())

    direct = [len(knn(x, i) & knn(other, i)) / len(knn(x, i) | knn(other, i)) for i in range(80)]
    np.testing.assert_allclose(got, direct)
    assert np.all((got >= 0) & (got <= 1)) and got.mean() < 0.3
    by_class = B.overlap_by_class(got, np.arange(80) % 4, 4)
    assert [r["n"] for r in by_class] == [20] * 4 and by_class[0]["median"] <= by_class[-1]["median"]


def test_regression_clusters_find_the_group_that_got_worse():
    rng = np.random.default_rng(4)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    group = np.repeat(np.arange(4), 60)
    x = centres[group] + rng.normal(scale=0.5, size=(240, 2))
    ca = rng.random(240) < 0.6
    cb = ca.copy()
    cb[group == 2] = False  # group 2 got worse ...
    cb[group != 2] = True  # ... while the average improved
    assert cb.mean() > ca.mean()
    out = B.regression_clusters(x, ca, cb, labels=group, n_clusters=4)
    worst = out.rows[0]
    assert worst["change"] < 0 and worst["n"] == 60 and worst["top_classes"][0] == (2, 60)
    assert set(np.flatnonzero(out.assign == worst["cluster"])) == set(np.flatnonzero(group == 2))
    assert all(r["change"] > 0 for r in out.rows[1:])


def test_davies_bouldin_matches_scikit_learn():
    from sklearn.metrics import davies_bouldin_score

    from asl_core.engine.metrics import davies_bouldin

    rng = np.random.default_rng(5)
    for classes in (2, 7, 60):
        y = rng.integers(0, classes, 900) * 3 + 1  # labels need not be 0..k-1
        x = rng.normal(size=(900, 6)) + (y[:, None] % 5)
        assert davies_bouldin(x, y) == pytest.approx(davies_bouldin_score(x, y), rel=1e-9)
    same = np.ones((10, 3))
    assert davies_bouldin(same, np.arange(10) % 2) == davies_bouldin_score(same, np.arange(10) % 2) == 0.0
