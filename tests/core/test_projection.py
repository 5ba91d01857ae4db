"""Projections: sampling, alignment, validation, trustworthiness (small N for t-SNE/UMAP)."""

from __future__ import annotations

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
                dict(method="pca", align="aligned_umap")):
        with pytest.raises(ValueError):
            ProjectionConfig(**bad)
    with pytest.raises(ValueError):
        project(X[:, :, None], y)
    with pytest.raises(ValueError):
        project(X, y[:5])
