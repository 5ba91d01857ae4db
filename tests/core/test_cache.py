"""Disk cache: hits across instances, misses, invalidation by content hash, damaged entries."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from asl_core.engine.cache import DiskCache, cached_features, cached_projections, default_root
from asl_core.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from asl_core.engine.projection import ProjectionConfig
from asl_core.engine.options import InferenceOptions


def _feats(cache, ck, spec, splits):
    return cached_features(cache, ck, spec, "test", ["embedding", "block3"], splits=splits,
                           options=InferenceOptions(device="cpu"))


def test_hit_across_instances_and_miss(tmp_path, ckpts, engine_spec, engine_splits):
    cache = DiskCache(tmp_path)
    first = _feats(cache, ckpts[0], engine_spec, engine_splits)
    assert (cache.hits, cache.misses) == (0, 1)
    again = DiskCache(tmp_path)  # another process sees the same files
    second = _feats(again, ckpts[0], engine_spec, engine_splits)
    assert again.hits == 1 and list(second.layers) == ["embedding", "block3"]
    for name in first.layers:
        np.testing.assert_array_equal(first.layers[name], second.layers[name])
    np.testing.assert_array_equal(first.index, second.index)
    _feats(again, ckpts[1], engine_spec, engine_splits)  # another model: a miss
    cached_features(again, ckpts[0], engine_spec, "val", ["embedding"], splits=engine_splits,
                    options=InferenceOptions(device="cpu"))
    assert again.misses == 2
    # features are folders of .npy files, filled through memory maps and read back mapped
    assert not list(tmp_path.rglob("*.pkl")) and len(list(tmp_path.rglob("*.d"))) == 3
    assert isinstance(second.layers["embedding"], np.memmap)


def test_changed_checkpoint_is_never_stale(tmp_path, ckpt_paths, engine_spec, engine_splits):
    cache = DiskCache(tmp_path / "cache")
    ck = load_checkpoint(ckpt_paths[0])
    before = _feats(cache, ck, engine_spec, engine_splits)
    state = {k: v.clone() for k, v in ck.model.state_dict().items()}
    state["embedding.1.weight"] += 0.5  # new weights, saved over the same file name
    path = save_checkpoint(state, dataclasses.replace(ck.meta, content_hash=""), tmp_path / "same")
    changed = load_checkpoint(path)
    assert changed.content_hash != ck.content_hash
    after = _feats(cache, changed, engine_spec, engine_splits)
    assert cache.hits == 0 and not np.allclose(after.layers["embedding"], before.layers["embedding"])


@pytest.mark.parametrize("damage", ["garbage_npz", "truncated_json", "missing_npz", "pickled_array"])
def test_damaged_entry_is_a_miss_and_is_rewritten(tmp_path, ckpts, engine_spec, engine_splits, damage):
    cache = DiskCache(tmp_path)
    good_logits = np.array(_feats(cache, ckpts[0], engine_spec, engine_splits).logits)  # a copy: damage below writes in place
    folder = next(tmp_path.rglob("*.d"))
    npy = folder / "logits.npy"
    js = folder.with_suffix(".json")
    if damage == "garbage_npz":
        npy.write_bytes(b"not an array" + b"x" * (npy.stat().st_size - 12))  # same size, no header
    elif damage == "truncated_json":
        js.write_text(js.read_text()[:20])
    elif damage == "missing_npz":
        npy.unlink()
    else:  # an object array: only readable with pickle, which the cache refuses
        buf = io.BytesIO()
        np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        npy.write_bytes(buf.getvalue())
        info = json.loads(js.read_text())
        info["mapped"]["logits"] = len(buf.getvalue())
        js.write_text(json.dumps(info))
    fresh = DiskCache(tmp_path)
    again = _feats(fresh, ckpts[0], engine_spec, engine_splits)
    assert fresh.hits == 0 and fresh.misses == 1
    np.testing.assert_array_equal(again.logits, good_logits)
    assert DiskCache(tmp_path).get("features", folder.stem) is not None  # rewritten whole


def test_projection_cache(tmp_path, ckpts, engine_spec, engine_splits):
    cache = DiskCache(tmp_path)
    fs = [_feats(cache, c, engine_spec, engine_splits) for c in ckpts]
    xs, y = [f.layers["embedding"] for f in fs], fs[0].labels
    cfg = ProjectionConfig(max_points=30)
    a = cached_projections(cache, ckpts, engine_spec, "test", "embedding", cfg, xs, y)
    b = cached_projections(DiskCache(tmp_path), ckpts, engine_spec, "test", "embedding", cfg, xs, y)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.coords, q.coords)
        np.testing.assert_array_equal(p.sample, q.sample)
        assert p.note == q.note and "30 of 50" in q.note
        assert p.trustworthiness == pytest.approx(q.trustworthiness)
    other = cached_projections(cache, ckpts, engine_spec, "test", "embedding", ProjectionConfig(seed=1), xs, y)
    assert other[0].sample.size == 50  # different parameters: computed, not reused


def test_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASL_LENS_CACHE", str(tmp_path / "elsewhere"))
    assert DiskCache().root == tmp_path / "elsewhere" == default_root()
    monkeypatch.delenv("ASL_LENS_CACHE")
    assert DiskCache().root.name == ".cache"


def test_unsaved_model_gets_a_hash(tmp_path, ckpts, engine_spec, engine_splits):
    ck = ckpts[0]
    bare = LoadedCheckpoint(model=ck.model, meta=dataclasses.replace(ck.meta, content_hash=""))
    cache = DiskCache(tmp_path)
    _feats(cache, ck, engine_spec, engine_splits)
    _feats(cache, bare, engine_spec, engine_splits)
    assert cache.hits == 1  # the recomputed hash equals the saved one
    with torch.no_grad():
        bare.model.fc.bias += 1.0
    try:
        _feats(cache, bare, engine_spec, engine_splits)
        assert cache.misses == 2
    finally:
        with torch.no_grad():
            bare.model.fc.bias -= 1.0


def test_separability_is_cached_next_to_its_features(tmp_path, ckpts, engine_spec, engine_splits, monkeypatch):
    """The quadratic separability figures cost seconds per layer and model; a fresh Compare on
    cached features read them from the cache instead of computing them again."""
    import math

    import asl_core.engine.metrics as metrics
    from asl_core.engine.cache import cached_separability

    f = _feats(DiskCache(tmp_path), ckpts[0], engine_spec, engine_splits)
    X, y = f.layers["embedding"], f.labels
    first = cached_separability(DiskCache(tmp_path), ckpts[0], engine_spec, "test", "embedding", X, y, seed=0)
    calls = []
    monkeypatch.setattr(metrics, "separability", lambda *a, **k: calls.append(k) or {"silhouette": 0.0})
    again = cached_separability(DiskCache(tmp_path), ckpts[0], engine_spec, "test", "embedding", X, y, seed=0)
    assert not calls and again.keys() == first.keys()
    for name, value in first.items():
        assert again[name] == value or (isinstance(value, float) and math.isnan(value) and math.isnan(again[name]))
    # another layer, seed or model is another entry
    cached_separability(DiskCache(tmp_path), ckpts[0], engine_spec, "test", "block3", f.layers["block3"], y, seed=0)
    cached_separability(DiskCache(tmp_path), ckpts[0], engine_spec, "test", "embedding", X, y, seed=1)
    cached_separability(DiskCache(tmp_path), ckpts[1], engine_spec, "test", "embedding", X, y, seed=0)
    assert len(calls) == 3
