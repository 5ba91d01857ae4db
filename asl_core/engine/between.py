"""Between two models, beyond accuracy (METHODS.md section 4): which class pairs are confused and
how that changed, where A's and B's predictions agree, at which depth their representations
diverge (linear CKA for every layer pair), how far each layer separates the classes over depth,
which samples' neighbourhoods moved (Jaccard of their k nearest neighbours), and groups of samples
that got worse (k-means clusters of the reference's features, ranked by the change in accuracy).

Pure numpy/scikit-learn/scipy; no Streamlit. Not pytorch-cka (PyPI): it hooks ``nn.Module``s and
runs its own DataLoader passes, while here every layer's features are already extracted and cached
on disk; the formula is a few lines, tested against its definition (tests/core/test_between.py).

    pairs = confused_pairs(y, pred_a, pred_b, num_classes)          # rows, most confused first
    order = cluster_order(confusion(y, pred_a, C))                  # confused classes side by side
    agree = agreement_matrix(pred_a, pred_b, C)                     # [C, C] counts, rows = A
    cka, how = cka_matrix(layers_a, layers_b)                       # [La, Lb] in [0, 1]
    overlap = neighbourhood_overlap(Xa, Xb, k=10)                   # [N] Jaccard in [0, 1]
    clusters = regression_clusters(Xa, y == pred_a, y == pred_b)    # worst first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Linear CKA exactly (feature-space cross-products, streamed over rows) while d_a * d_b stays small;
# wider layers use the minibatch estimator (METHODS.md section 4).
EXACT_CKA_MAX_DIM = 4096
CKA_BATCH = 1024


# --------------------------------------------------------------------------- confusion


def confused_pairs(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray | None, num_classes: int,
                   top: int | None = None) -> list[dict[str, Any]]:
    """Off-diagonal (true, predicted) pairs with a count in A (or in B), most confused first (by the
    larger of A's and B's count). Each row: ``true``, ``pred``, ``count_a``, ``rate_a`` (share of the
    true class's samples), and with ``pred_b``: ``count_b``, ``rate_b``, ``change`` (B - A counts)."""
    y = np.asarray(labels)
    support = np.bincount(y, minlength=num_classes).astype(float)
    ca = _pair_counts(y, pred_a, num_classes)
    cb = _pair_counts(y, pred_b, num_classes) if pred_b is not None else None
    size = np.maximum(ca, cb) if cb is not None else ca
    np.fill_diagonal(size, 0)
    t, p = np.nonzero(size)
    order = np.lexsort((p, t, -size[t, p]))
    if top is not None:
        order = order[:top]
    rows = []
    for i in order:
        tt, pp = int(t[i]), int(p[i])
        row = {"true": tt, "pred": pp, "count_a": int(ca[tt, pp]), "rate_a": _rate(ca[tt, pp], support[tt])}
        if cb is not None:
            row.update(count_b=int(cb[tt, pp]), rate_b=_rate(cb[tt, pp], support[tt]), change=int(cb[tt, pp] - ca[tt, pp]))
        rows.append(row)
    return rows


def _rate(count: float, support: float) -> float:
    return float(count / support) if support else 0.0


def _pair_counts(y: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(np.asarray(y) * c + np.asarray(pred), minlength=c * c).reshape(c, c)


def cluster_order(cm: np.ndarray) -> list[int]:
    """An order of the classes that puts those confused with each other side by side: average-linkage
    clustering of the symmetrised, row-normalised off-diagonal confusion (a class pair's distance is 1
    minus its confusion relative to the largest), leaves in the dendrogram's order (optimally ordered
    up to 300 classes). Classes never confused keep their relative order at the end."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    cm = np.asarray(cm, dtype=float)
    c = cm.shape[0]
    if c < 3:
        return list(range(c))
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    s = rates + rates.T
    np.fill_diagonal(s, 0)
    confused = np.flatnonzero(s.sum(1) > 0)
    rest = [int(i) for i in range(c) if i not in set(confused.tolist())]
    if confused.size < 3:
        return [int(i) for i in confused] + rest
    sub = s[np.ix_(confused, confused)]
    d = 1.0 - sub / sub.max()
    np.fill_diagonal(d, 0)
    z = linkage(squareform(d, checks=False), method="average")
    if confused.size <= 300:
        z = optimal_leaf_ordering(z, squareform(d, checks=False))
    return [int(confused[i]) for i in leaves_list(z)] + rest


def agreement_matrix(pred_a: np.ndarray, pred_b: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts of (A's prediction = row, B's prediction = column) over the same samples."""
    if len(pred_a) != len(pred_b):
        raise ValueError("the two models' predictions must cover the same samples")
    return _pair_counts(pred_a, pred_b, num_classes)


# --------------------------------------------------------------------------- CKA


def linear_cka(x: np.ndarray, y: np.ndarray, batch: int = CKA_BATCH) -> tuple[float, str]:
    """Linear CKA of ``x [n, d_a]`` and ``y [n, d_b]`` (the same ``n`` samples, in the same order).

    Up to ``EXACT_CKA_MAX_DIM`` features per side it is exact: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F
    ||Yc^T Yc||_F)`` with the column-centred cross-products accumulated over row chunks of ``batch``
    (so memory is ``d_a * d_b``, not ``n^2``). Wider: the unbiased HSIC estimator averaged over
    minibatches of ``batch`` samples (Nguyen et al., 2021). Returns (value, the estimator used)."""
    x, y = _as_2d(x), _as_2d(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples in both: {x.shape[0]} vs {y.shape[0]} rows")
    if max(x.shape[1], y.shape[1]) <= EXACT_CKA_MAX_DIM:
        return _exact_cka(x, y, batch), "exact"
    return _minibatch_cka(x, y, batch), f"minibatch unbiased HSIC ({batch} samples per batch)"


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def _centred_products(x: np.ndarray, y: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Xc^T Xc``, ``Yc^T Yc``, ``Yc^T Xc`` from sums over row chunks (``Xc = X - mean``)."""
    n = x.shape[0]
    mx, my = x.mean(0), y.mean(0)
    xx = np.zeros((x.shape[1],) * 2)
    yy = np.zeros((y.shape[1],) * 2)
    yx = np.zeros((y.shape[1], x.shape[1]))
    for s in range(0, n, batch):
        a, b = x[s : s + batch] - mx, y[s : s + batch] - my
        xx += a.T @ a
        yy += b.T @ b
        yx += b.T @ a
    return xx, yy, yx


def _exact_cka(x: np.ndarray, y: np.ndarray, batch: int) -> float:
    xx, yy, yx = _centred_products(x, y, batch)
    denom = np.linalg.norm(xx) * np.linalg.norm(yy)
    return float(np.sum(yx**2) / denom) if denom > 0 else 0.0


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices (diagonals zeroed), ``n > 3``."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    ones = np.ones(n)
    term = np.sum(k * l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2)) - 2 * (ones @ k @ l @ ones) / (n - 2)
    return float(term / (n * (n - 3)))


def _minibatch_cka(x: np.ndarray, y: np.ndarray, batch: int) -> float:
    n = x.shape[0]
    batch = max(4, min(batch, n))
    hxy = hxx = hyy = 0.0
    for s in range(0, n - 3, batch):
        a, b = x[s : s + batch], y[s : s + batch]
        if a.shape[0] < 4:
            break
        k, l = a @ a.T, b @ b.T
        hxy += _unbiased_hsic(k, l)
        hxx += _unbiased_hsic(k, k)
        hyy += _unbiased_hsic(l, l)
    denom = np.sqrt(max(hxx, 0.0) * max(hyy, 0.0))
    return float(np.clip(hxy / denom, 0.0, 1.0)) if denom > 0 else 0.0


def cka_matrix(layers_a: Mapping[str, np.ndarray], layers_b: Mapping[str, np.ndarray],
               batch: int = CKA_BATCH) -> tuple[np.ndarray, list[str]]:
    """``[len(layers_a), len(layers_b)]`` linear CKA of every layer pair (rows = A's layers in order),
    and the estimators used (``"exact"``, or the minibatch one for wide layers)."""
    out = np.zeros((len(layers_a), len(layers_b)))
    used: set[str] = set()
    for i, xa in enumerate(layers_a.values()):
        for j, xb in enumerate(layers_b.values()):
            out[i, j], how = linear_cka(xa, xb, batch)
            used.add(how)
    return out, sorted(used)


# --------------------------------------------------------------------------- neighbourhoods


def knn_indices(x: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """``[n, k]`` indices of each row's ``k`` nearest other rows (Euclidean, full dimension, exact;
    ties broken by index so the result is deterministic)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = x.shape[0]
    k = min(k, n - 1)
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, chunk):
        d = sq[s : s + chunk, None] - 2 * x[s : s + chunk] @ x.T + sq[None, :]
        rows = np.arange(s, min(s + chunk, n))
        d[rows - s, rows] = np.inf
        part = np.argpartition(d, k, axis=1)[:, : k + 1]
        for r in range(part.shape[0]):
            cand = part[r]
            order = np.lexsort((cand, d[r, cand]))
            out[s + r] = cand[order][:k]
    return out


def neighbourhood_overlap(xa: np.ndarray, xb: np.ndarray, k: int = 10) -> np.ndarray:
    """Per sample, the Jaccard index of its ``k`` nearest neighbours in A's features and in B's
    (same samples, same order): 1, the same neighbours; 0, all new (METHODS.md section 4)."""
    if len(xa) != len(xb):
        raise ValueError("neighbourhood overlap needs the same samples in both models")
    na, nb = knn_indices(xa, k), knn_indices(xb, k)
    kk = na.shape[1]
    inter = np.array([np.intersect1d(a, b, assume_unique=True).size for a, b in zip(na, nb)], dtype=float)
    return inter / (2 * kk - inter)


def overlap_by_class(overlap: np.ndarray, labels: np.ndarray, num_classes: int) -> list[dict[str, Any]]:
    """Per class: ``class``, ``n``, ``median`` and ``mean`` overlap, lowest median first."""
    rows = []
    for c in range(num_classes):
        v = overlap[np.asarray(labels) == c]
        if v.size:
            rows.append({"class": c, "n": int(v.size), "median": float(np.median(v)), "mean": float(v.mean())})
    return sorted(rows, key=lambda r: (r["median"], r["class"]))


# --------------------------------------------------------------------------- regression clusters


@dataclass(frozen=True)
class Clusters:
    """``assign [N]`` cluster per sample; ``rows``: per cluster ``cluster``, ``n``, ``acc_a``,
    ``acc_b``, ``change`` (B - A accuracy), ``top_classes`` [(class, count)], worst change first."""

    assign: np.ndarray
    rows: tuple[dict[str, Any], ...]


def regression_clusters(x_ref: np.ndarray, correct_a: np.ndarray, correct_b: np.ndarray, labels: np.ndarray,
                        n_clusters: int = 20, seed: int = 0) -> Clusters:
    """k-means on the reference model's standardised features; clusters ranked by the change of
    accuracy from A to B (most worsened first), so groups that got worse show even when the
    average improved."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x_ref, dtype=np.float64).reshape(len(x_ref), -1)
    n_clusters = max(1, min(int(n_clusters), len(x)))
    z = StandardScaler().fit_transform(x)
    assign = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(z)
    ca, cb, y = np.asarray(correct_a, bool), np.asarray(correct_b, bool), np.asarray(labels)
    rows = []
    for c in range(n_clusters):
        m = assign == c
        if not m.any():
            continue
        values, counts = np.unique(y[m], return_counts=True)
        top = sorted(zip(values.tolist(), counts.tolist()), key=lambda t: (-t[1], t[0]))[:3]
        rows.append({"cluster": c, "n": int(m.sum()), "acc_a": float(ca[m].mean()), "acc_b": float(cb[m].mean()),
                     "change": float(cb[m].mean() - ca[m].mean()), "top_classes": top})
    rows.sort(key=lambda r: (r["change"], -r["n"], r["cluster"]))
    return Clusters(assign=assign, rows=tuple(rows))


def separability_over_depth(per_layer: Mapping[str, Mapping[str, Any]], keys: Sequence[str] = ("silhouette", "knn_accuracy")
                            ) -> dict[str, list[float]]:
    """``{key: [value per layer, in depth order]}`` from ``{layer: separability(...)}``."""
    return {k: [float(per_layer[layer][k]) for layer in per_layer] for k in keys}
