"""The story behind a comparison: per-class scores, paired bootstrap intervals, neighbours in
full-dimensional features, the headline and the sample table, against values worked out by hand
or by a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from asl_core.engine.analysis import compare
from asl_core.engine.cache import DiskCache
from asl_core.engine.metrics import bootstrap_difference, nearest_neighbours, per_class_scores
from asl_core.engine.projection import ProjectionConfig
from asl_core.engine.story import headline, neighbours, per_class_rows, tail_classes, train_counts
from asl_core.errors import UserError
from asl_core.report.figures import class_palette, delta_figure, improvement, per_class_delta_figure, scatter_figure
from asl_core.report.tables import filter_samples, flip_table, headline_lines, per_class_table, sample_table
from asl_core.engine.options import InferenceOptions

Y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
A = np.array([0, 0, 1, 1, 1, 0, 2, 2])
B = np.array([0, 1, 1, 1, 1, 1, 2, 0])


def test_per_class_scores_by_hand():
    s = per_class_scores(Y, A, 4)  # class 3 never occurs nor is predicted: all zero, no warning
    assert s["support"] == [3, 3, 2, 0]
    np.testing.assert_allclose(s["recall"], [2 / 3, 2 / 3, 1, 0])
    np.testing.assert_allclose(s["precision"], [2 / 3, 2 / 3, 1, 0])
    np.testing.assert_allclose(s["f1"], [2 / 3, 2 / 3, 1, 0])


def test_bootstrap_difference_is_paired_and_matches_a_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    a = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    b = np.where(rng.random(300) < 0.1, rng.integers(0, 4, 300), a)  # B = A with 10% of answers redrawn
    out = bootstrap_difference(y, a, b, 4, n_boot=300, seed=5)
    assert out["accuracy"]["delta"] == pytest.approx((b == y).mean() - (a == y).mean())
    f1 = f1_score(y, b, labels=range(4), average="macro", zero_division=0) - f1_score(y, a, labels=range(4), average="macro",
                                                                                       zero_division=0)
    assert out["macro_f1"]["delta"] == pytest.approx(f1)
    # the vectorised macro-F1 per resample equals sklearn's on the same resamples
    rows = np.random.default_rng(5).integers(0, 300, size=(300, 300))
    loop = [f1_score(y[r], b[r], labels=range(4), average="macro", zero_division=0)
            - f1_score(y[r], a[r], labels=range(4), average="macro", zero_division=0) for r in rows]
    low, high = np.percentile(loop, [2.5, 97.5])
    assert out["macro_f1"]["low"] == pytest.approx(low) and out["macro_f1"]["high"] == pytest.approx(high)
    assert out["accuracy"]["low"] <= out["accuracy"]["delta"] <= out["accuracy"]["high"]
    # identical models: a zero-width interval at zero; the pairing is what makes it zero
    same = bootstrap_difference(y, a, a, 4, n_boot=50)
    assert same["accuracy"] == {"delta": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="level"):
        bootstrap_difference(y, a, b, 4, level=1.5)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_difference(y, a[:-1], b, 4)


def test_nearest_neighbours_exclude_the_query():
    X = np.array([[0.0], [1.0], [3.0], [7.0], [0.0]])
    idx, dist = nearest_neighbours(X, [0, 3], k=2)
    assert idx[0].tolist() == [4, 1] and dist[0].tolist() == [0.0, 1.0]  # the duplicate counts, the query does not
    assert idx[1].tolist() == [2, 1] and dist[1].tolist() == [4.0, 6.0]
    assert nearest_neighbours(X, [1], k=99)[0].shape == (1, 4)  # capped at N - 1
    with pytest.raises(ValueError, match="query rows"):
        nearest_neighbours(X, [5])


def test_tail_classes():
    assert tail_classes([60, 46, 36, 28, 21, 16, 13, 10, 8, 6]) == [7, 8, 9]
    assert tail_classes([50, 50, 49]) == []  # balanced: no tail
    assert tail_classes([10, 2, 10, 3], k=2) == [1, 3]


def test_improvement_colours_fewer_errors_like_more_correct():
    delta = np.array([[2, -1], [3, -3]])  # diagonal: correct answers; off it: errors
    np.testing.assert_array_equal(improvement(delta), [[2, 1], [-3, -3]])
    heat = delta_figure(delta, ["a", "b"]).data[0]
    np.testing.assert_array_equal(heat.z, improvement(delta))
    assert list(heat.colorbar.ticktext) == ["worse", "same", "better"]
    assert heat.text[0][1] == "-1"  # the cell still prints the raw change


def test_palette_is_distinct_for_many_classes():
    for n in (3, 10, 20, 30):
        assert len(set(class_palette(n))) == n
    fig = scatter_figure(np.zeros((6, 2)), [0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2], np.ones(6), list("abc"), isolate=[1],
                         show_legend=False, axis_titles=("PC 1", "PC 2"), marker_size=9, opacity=0.5)
    assert [t.name for t in fig.data] == ["other classes", "b"] and len(fig.data[1].x) == 2
    assert fig.layout.xaxis.title.text == "PC 1" and fig.data[1].marker.size == 9 and not fig.layout.showlegend


def test_per_class_delta_figure_sorted_by_change():
    fig = per_class_delta_figure(["a", "b", "c"], {"m": [0.1, -0.3, 0.2]}, reference="base")
    assert list(fig.data[0].y) == ["b", "a", "c"]  # plotly draws the first at the bottom: largest gain on top


@pytest.fixture()
def comparison(ckpts, tmp_path):
    return compare(ckpts, split="test", projection=ProjectionConfig(max_points=40), cache=DiskCache(tmp_path),
                   options=InferenceOptions(device="cpu"))


def test_headline_and_tables(comparison, engine_splits):
    ref, other = comparison.models
    h = headline(comparison, other, n_boot=200)
    y = ref.features.labels
    assert h.accuracy["delta"] == pytest.approx(other.metrics["accuracy"] - ref.metrics["accuracy"])
    assert h.accuracy["low"] <= h.accuracy["delta"] <= h.accuracy["high"]
    assert h.pvalue == other.mcnemar["pvalue"] and h.n == y.size
    net = dict(zip(other.flips["class"], other.flips["net"]))
    assert all(net[c] == v > 0 for c, v in h.gained) and all(net[c] == v < 0 for c, v in h.lost)
    if h.gained:
        assert h.gained[0][1] == max(net.values())
    assert set(h.separability) == {"silhouette", "knn_accuracy", "within_between_ratio"}
    lines = headline_lines(h, comparison.class_names)
    assert ("significant" in lines[0]) and "95% paired bootstrap" in lines[1] and "p " in lines[0]
    with pytest.raises(UserError, match="reference"):
        headline(comparison, ref)

    counts = train_counts(comparison)
    assert counts == engine_splits.train.class_counts(10)
    rows = per_class_rows(comparison)
    assert len(rows) == 20 and rows[0]["d_f1"] is None and rows[1]["d_f1"] is not None
    wide = per_class_table(rows)
    assert len(wide) == 10 and wide["train n"].tolist() == counts
    assert {f"Δ F1 {other.name}", f"{ref.name} recall", f"Δ precision {other.name}"} <= set(wide.columns)
    assert list(flip_table(comparison, other).columns[:2]) == ["class", "net"]

    table = sample_table(comparison)
    assert len(table) == y.size
    right = np.stack([ref.features.correct, other.features.correct])
    assert table["flipped"].sum() == (right.any(0) & ~right.all(0)).sum() == other.mcnemar["b"] + other.mcnemar["c"]
    flipped = filter_samples(table, flipped=True)
    assert flipped["flipped"].all() and len(flipped) == table["flipped"].sum()
    low = filter_samples(table, confidence=(0.0, 0.3), model=other.name)
    assert (low[f"{other.name} conf"] <= 0.3).all()
    assert set(filter_samples(table, true_classes=[2])["_true"]) <= {2}
    with pytest.raises(ValueError, match="confidence range"):
        filter_samples(table, confidence=(0.8, 0.2))


def test_neighbours_in_every_model(comparison):
    sample = int(comparison.reference.features.index[5])
    near = neighbours(comparison, sample, k=4)
    assert [n.model for n in near] == [m.name for m in comparison.models]
    for n, m in zip(near, comparison.models):
        X = m.features.layers[comparison.layer]
        d = np.linalg.norm(X - X[5], axis=1)
        d[5] = np.inf
        np.testing.assert_allclose(n.distances, np.sort(d)[:4], rtol=1e-5)
        assert sample not in n.samples and sum(n.class_counts.values()) == 4
    with pytest.raises(UserError, match="not in the test split"):
        neighbours(comparison, 10**9)


def test_headline_names_a_collapsed_class_whatever_mcnemar_says(comparison):
    """Issue 20, defect 5: 'no significant difference' while one class is never right any more."""
    import dataclasses

    from asl_core.engine.story import collapsed_recall

    ref, other = comparison.models
    y = ref.features.labels
    right = [c for c in range(10) if (ref.features.preds[y == c] == c).any()]
    c = right[0]
    preds = ref.features.preds.copy()
    preds[y == c] = (c + 1) % 10  # class c is never right any more; every other answer unchanged
    broken = dataclasses.replace(other, features=dataclasses.replace(other.features, preds=preds))
    h = headline(comparison, broken, n_boot=50)
    assert [t[0] for t in h.collapsed] == [c] and h.collapsed[0][2] == 0.0
    lines = headline_lines(h, comparison.class_names)
    assert "recall collapsed" in lines[0] and f"class {comparison.class_names[c]} " in lines[0]
    assert "training" not in lines[0]
    # the classes are named as classes, and by the F1 change the per-class chart shows
    assert f"fell most: class {comparison.class_names[c]} (−" in lines[2]
    assert collapsed_recall(0.3, 0.0) and collapsed_recall(0.8, 0.3) and not collapsed_recall(0.8, 0.5)
    assert not collapsed_recall(0.0, 0.0)
    train = headline(dataclasses.replace(comparison, split="train"), other, n_boot=50)
    assert "**training** split" in headline_lines(train, comparison.class_names)[0]
