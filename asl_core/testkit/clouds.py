"""Synthetic 2-D views for the big-cloud browser test and bench (``tests/browser/cloud_page.py``,
``bench/bench_cloud.py``)."""

from __future__ import annotations

import numpy as np


def synthetic_views(n: int, n_views: int = 2) -> list[dict[str, np.ndarray]]:
    """10 Gaussian blobs per view, the same samples in every view, 80% predicted right."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    preds = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 10, n))
    confidence = rng.random(n)
    out = []
    for _ in range(n_views):
        centres = rng.normal(0, 6, (10, 2))
        coords = (centres[labels] + rng.normal(0, 1.5, (n, 2))).astype(np.float32)
        out.append({"coords": coords, "labels": labels, "preds": preds, "confidence": confidence, "index": np.arange(n)})
    return out
