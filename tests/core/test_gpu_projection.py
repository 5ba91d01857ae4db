"""The optional cuML backend of t-SNE/UMAP: dispatch, the shared path (trustworthiness, alignment,
cache) and the recorded backend. cuML itself needs a GPU; here a stand-in module with cuML's
estimator interface (backed by scikit-learn / umap-learn) takes its place, and the real thing runs
in tests/gpu on a GPU machine."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from asl_core.checkpoint import load_checkpoint
from asl_core.engine import gpu_projection
from asl_core.engine.cache import DiskCache, cached_projections
from asl_core.engine.projection import ProjectionConfig, project, project_aligned
from asl_core.errors import SettingsError
from asl_core.settings import Settings


@pytest.fixture
def fake_cuml(monkeypatch):
    """A ``cuml.manifold`` with cuML's TSNE/UMAP signatures; records every fit."""
    calls: list[tuple[str, dict]] = []

    class TSNE:
        def __init__(self, n_components=2, perplexity=30.0, random_state=None, **kw):
            self.params = dict(n_components=n_components, perplexity=perplexity, random_state=random_state, **kw)

        def fit_transform(self, X):
            from sklearn.manifold import TSNE as SkTSNE

            calls.append(("tsne", self.params))
            assert X.dtype == np.float32 and X.flags.c_contiguous
            return SkTSNE(**self.params, init="pca").fit_transform(X)

    class UMAP:
        def __init__(self, n_components=2, n_neighbors=15, min_dist=0.1, random_state=None):
            self.params = dict(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist,
                               random_state=random_state)

        def fit_transform(self, X):
            import umap

            calls.append(("umap", self.params))
            return umap.UMAP(**self.params, n_jobs=1).fit_transform(X)

    manifold = types.ModuleType("cuml.manifold")
    manifold.TSNE, manifold.UMAP = TSNE, UMAP
    root = types.ModuleType("cuml")
    root.manifold = manifold
    monkeypatch.setitem(sys.modules, "cuml", root)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    monkeypatch.setattr(gpu_projection, "cuml_available", lambda: True)  # "and a GPU is present"
    return calls


def blobs(n=120, d=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return (rng.normal(size=(n, d)) + 4 * labels[:, None]).astype(np.float32), labels


def test_without_cuml_nothing_changes(monkeypatch):
    monkeypatch.delitem(sys.modules, "cuml", raising=False)
    if gpu_projection.cuml_available():
        pytest.skip("cuML and a GPU are present here")
    X, y = blobs()
    proj = project(X, y, ProjectionConfig(method="tsne", perplexity=10.0))
    assert proj.backend == "cpu" and "GPU" not in proj.note
    assert gpu_projection.backend_for("umap") == "cpu"


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_with_cuml_tsne_and_umap_run_through_it_and_say_so(fake_cuml, method):
    X, y = blobs()
    config = ProjectionConfig(method=method, n_neighbors=200, perplexity=10.0)
    proj = project(X, y, config)
    assert [c[0] for c in fake_cuml] == [method]
    assert proj.backend == "cuml" and f"{method} on the GPU (cuML)" in proj.note
    if method == "umap":
        assert fake_cuml[0][1]["n_neighbors"] == 119 and "n_neighbors lowered to 119" in proj.note
    assert proj.coords.shape == (120, 2) and proj.coords.dtype == np.float32
    assert 0.9 < proj.trustworthiness <= 1.0  # the same trustworthiness as the CPU path, on separable blobs


def test_pca_and_aligned_umap_stay_on_the_cpu(fake_cuml):
    X, y = blobs()
    assert project(X, y, ProjectionConfig(method="pca")).backend == "cpu"
    # AlignedUMAP has no cuML counterpart (running it here is test_projection's job)
    assert gpu_projection.backend_for("umap", aligned_umap=True) == "cpu"
    assert gpu_projection.backend_for("umap") == "cuml" and fake_cuml == []


def test_procrustes_alignment_applies_to_gpu_pictures(fake_cuml):
    X, y = blobs()
    projs = project_aligned([X, X.copy()], y, ProjectionConfig(method="umap", align="procrustes"))
    assert [p.backend for p in projs] == ["cuml", "cuml"] and len(fake_cuml) == 2
    assert "Procrustes-aligned" in projs[1].note


def test_the_setting_turns_it_off(fake_cuml, monkeypatch):
    monkeypatch.setenv("ASL_LENS_GPU_PROJECTION", "off")
    X, y = blobs()
    assert project(X, y, ProjectionConfig(method="tsne", perplexity=10.0)).backend == "cpu" and fake_cuml == []
    with pytest.raises(SettingsError, match="ASL_LENS_GPU_PROJECTION='sometimes' must be auto or off"):
        Settings.from_env({"ASL_LENS_GPU_PROJECTION": "sometimes"})


def test_cache_keeps_gpu_and_cpu_pictures_apart_and_records_the_backend(fake_cuml, monkeypatch, tmp_path, ckpt_paths,
                                                                         engine_spec):
    ckpts = [load_checkpoint(p) for p in ckpt_paths]
    X, y = blobs()
    xs = [X, X.copy()]
    config = ProjectionConfig(method="umap", n_neighbors=10)
    cache = DiskCache(tmp_path)
    gpu = cached_projections(cache, ckpts, engine_spec, "test", "embedding", config, xs, y)
    again = cached_projections(cache, ckpts, engine_spec, "test", "embedding", config, xs, y)
    assert [p.backend for p in again] == ["cuml", "cuml"] and cache.hits == 1 and len(fake_cuml) == 2
    np.testing.assert_array_equal(again[1].coords, gpu[1].coords)
    monkeypatch.setenv("ASL_LENS_GPU_PROJECTION", "off")
    cpu = cached_projections(cache, ckpts, engine_spec, "test", "embedding", config, xs, y)
    assert [p.backend for p in cpu] == ["cpu", "cpu"] and cache.hits == 1, "a CPU request never gets the GPU picture"
    assert len(list((tmp_path / "projections").rglob("*.json"))) == 2
