"""Projections: sampling, alignment, validation, trustworthiness (small N for t-SNE/UMAP)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from asl_core.engine.projection import (Projection, ProjectionConfig, align_to, project, project_aligned,
                                 stratified_sample)


def blobs(n_per=40, classes=3, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    return (rng.normal(size=(y.size, dim)) + 6 * rng.normal(size=(classes, dim))[y]).astype(np.float32), y


def test_stratified_sample_counts():
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    s = stratified_sample(y, 100, seed=3)
    assert s.size == 100 and np.all(np.diff(s) > 0)
    assert np.bincount(y[s]).tolist() == [70, 20, 10]
    np.testing.assert_array_equal(s, stratified_sample(y, 100, seed=3))
    assert not np.array_equal(s, stratified_sample(y, 100, seed=4))
    np.testing.assert_array_equal(stratified_sample(y, 5000), np.arange(1000))
    tail = np.array([0] * 995 + [1] * 5)
    assert np.bincount(tail[stratified_sample(tail, 10)]).tolist() == [9, 1]  # a rare class keeps a row


def test_sampled_projection_says_so():
    X, y = blobs(n_per=20)
    p = project(X, y, ProjectionConfig(max_points=30))
    assert p.coords.shape == (30, 2) and p.sample.size == 30 and p.n_total == 60
    assert "30 of 60" in p.note
    full = project(X, y, ProjectionConfig())
    assert full.note == "" and full.trustworthiness > 0.8


def test_procrustes_recovers_rotated_scaled_copy():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(50, 2))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 3.5 * ref @ rot + np.array([10.0, -4.0])
    np.testing.assert_allclose(align_to(ref, moved), ref, atol=1e-5)
    mirrored = moved * np.array([1.0, -1.0])
    np.testing.assert_allclose(align_to(ref, mirrored), ref, atol=1e-5)


def test_project_aligned_same_samples_and_reference_kept():
    X, y = blobs()
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    cfg = ProjectionConfig(max_points=90, standardize=False)  # per-feature scaling is not rotation-invariant
    ps = project_aligned([X, 2 * X @ Q], y, cfg)
    assert len(ps) == 2 and all(isinstance(p, Projection) for p in ps)
    np.testing.assert_array_equal(ps[0].sample, ps[1].sample)
    np.testing.assert_allclose(ps[0].coords, project(X, y, cfg).coords, atol=1e-5)
    # a rotated, scaled copy of the same features lands on the reference after alignment
    np.testing.assert_allclose(ps[1].coords, ps[0].coords, atol=1e-2 * np.abs(ps[0].coords).max())
    assert "Procrustes" in ps[1].note


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_nonlinear_methods_small(method):
    X, y = blobs(n_per=15)
    cfg = ProjectionConfig(method=method, seed=0, pca_dims=5, perplexity=10.0, n_neighbors=10)
    p = project(X, y, cfg)
    assert p.coords.shape == (45, 2) and np.isfinite(p.coords).all() and p.trustworthiness > 0.7
    np.testing.assert_allclose(project(X, y, cfg).coords, p.coords, atol=1e-4)  # seeded


def test_aligned_umap_small():
    X, y = blobs(n_per=12)
    ps = project_aligned([X, X + 0.01], y, ProjectionConfig(method="umap", align="aligned_umap", n_neighbors=8))
    assert [p.coords.shape for p in ps] == [(36, 2), (36, 2)] and "AlignedUMAP" in ps[1].note


def test_config_validation():
    X, y = blobs(n_per=10)
    for bad in (dict(method="mds"), dict(align="x"), dict(pca_dims=1), dict(perplexity=-1.0), dict(max_points=0),
                dict(umap_epochs=3), dict(tsne_iter=0),
                dict(method="pca", align="aligned_umap")):
        with pytest.raises(ValueError):
            ProjectionConfig(**bad)
    with pytest.raises(ValueError):
        project(X[:, :, None], y)
    with pytest.raises(ValueError):
        project(X, y[:5])


# ------------------------------------------------------------------ the shared k-NN graph


def test_knn_graph_exact_self_first_and_memoised():
    from asl_core.engine import neighbors

    neighbors.clear_memo()
    X, _ = blobs(n_per=20)
    X[5] = X[6]  # a duplicate may sort before the point itself; the point still comes first
    idx, dist = neighbors.knn_graph(X, 4)
    assert idx.shape == dist.shape == (60, 4) and idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], np.arange(60))
    assert (np.diff(dist, axis=1) >= -1e-6).all() and idx[5, 1] == 6 and idx[6, 1] == 5
    brute = np.argsort(((X[:, None] - X[None]) ** 2).sum(-1), axis=1, kind="stable")[:, 1:4]
    assert np.mean([set(a) == set(b) for a, b in zip(idx[:, 1:], brute)]) > 0.95
    again = neighbors.knn_graph(X.copy(), 4)  # same content, another array: a hit
    assert again[0] is idx and neighbors.memo_info()["hits"] == 1
    neighbors.knn_graph(X + 1e-3, 4)
    neighbors.knn_graph(X, 5)
    assert neighbors.memo_info()["misses"] == 3
    with pytest.raises(ValueError):
        neighbors.knn_graph(X, 61)
    with pytest.raises(ValueError):  # shared with the memo: nobody may write into it
        idx[0, 0] = 1


def test_layout_only_change_reuses_the_graph_and_stays_deterministic():
    from asl_core.engine import neighbors

    X, y = blobs(n_per=15)
    base = ProjectionConfig(method="umap", pca_dims=5, n_neighbors=8, umap_epochs=30)
    neighbors.clear_memo()
    first = project(X, y, base)
    moved = project(X, y, dataclasses.replace(base, min_dist=0.5))  # layout only: the graph is reused
    info = neighbors.memo_info()
    assert info["misses"] == 1 and info["hits"] == 1
    assert not np.allclose(first.coords, moved.coords)
    neighbors.clear_memo()  # recomputed from scratch, the same picture
    np.testing.assert_allclose(project(X, y, dataclasses.replace(base, min_dist=0.5)).coords, moved.coords, atol=1e-4)
    project(X, y, dataclasses.replace(base, method="tsne", perplexity=5.0, tsne_iter=60))
    assert neighbors.memo_info()["misses"] == 2  # t-SNE wants 3 x perplexity neighbours: its own graph


def test_tsne_lowers_perplexity_for_few_points_and_says_so():
    X, y = blobs(n_per=5)
    p = project(X, y, ProjectionConfig(method="tsne", perplexity=30.0, pca_dims=None, tsne_iter=60))
    assert p.coords.shape == (15, 2) and np.isfinite(p.coords).all() and "perplexity lowered" in p.note


def test_numba_cache_lands_under_the_engine_cache(tmp_path):
    """In a fresh process: umap-learn's functions (compiled without cache=True) get an on-disk
    cache under $ASL_LENS_CACHE/numba, and compiling one writes its index there."""
    import os
    import subprocess
    import sys

    code = ("from asl_core.engine.neighbors import enable_numba_cache\n"
            "folder = enable_numba_cache()\n"
            "import numpy as np, umap.umap_ as u\n"
            "from numba.core.caching import NullCache\n"
            "assert not isinstance(u.smooth_knn_dist._cache, NullCache)\n"
            "u.smooth_knn_dist(np.ones((5, 3), np.float32), 3.0)\n"
            "print(folder)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["ASL_LENS_CACHE"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(tmp_path / "numba")
    assert any(p.name.startswith("umap_.smooth_knn_dist") for p in (tmp_path / "numba").rglob("*.nbi"))


def test_thread_budget_reaches_numba_and_is_read_back():
    """openTSNE takes ``current_threads()``; numba (NN-descent, UMAP) follows the same budget."""
    import numba
    import torch

    from asl_core.engine import neighbors
    from asl_core.runtime import current_threads, limit_threads

    neighbors.enable_numba_cache()  # numba imported, its pool started
    before = torch.get_num_threads()
    try:
        assert limit_threads(1) == 1 and current_threads() == 1 and numba.get_num_threads() == 1
    finally:
        limit_threads(before)
