"""Stratified row sampling: a leaf module (NumPy only) that the projections and the metrics both
use, so that neither imports the other for it."""

from __future__ import annotations

import numpy as np


def stratified_sample(labels, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all of them when ``N <= max_points``; otherwise ``max_points`` rows
    drawn without replacement, each class keeping its share (largest remainders, at least one
    row per class while the budget allows). Deterministic in ``seed``."""
    labels = np.asarray(labels)
    n = labels.shape[0]
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (max_points / n)
    take = np.floor(exact).astype(int)
    if max_points >= classes.size:
        take = np.maximum(take, 1)
    spare = max_points - take.sum()
    order = np.argsort(-(exact - take), kind="stable")
    while spare != 0:  # hand out (or take back) single rows by largest remainder
        for c in order:
            if spare > 0 and take[c] < counts[c]:
                take[c] += 1
                spare -= 1
            elif spare < 0 and take[c] > 1:
                take[c] -= 1
                spare += 1
            if spare == 0:
                break
    picked = [rng.choice(np.flatnonzero(inverse == c), size=take[c], replace=False) for c in range(classes.size)]
    return np.sort(np.concatenate(picked))
