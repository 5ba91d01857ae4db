"""Resources: a large N is projected on a stated stratified sample (never an out-of-memory
crash, never silent), and running out of device memory during extraction falls back to
smaller batches (simulated on the CPU: the same code path as torch.cuda's OOM error)."""

from __future__ import annotations

import numpy as np
import torch

from asl_core.checkpoint import load_checkpoint
from asl_core.data import DatasetSpec, build_splits
from asl_core.engine.features import extract_features
from asl_core.engine.metrics import separability
from asl_core.engine.projection import ProjectionConfig, project
from asl_core.engine.options import InferenceOptions


def test_large_n_is_a_stated_stratified_sample(tally):
    rng = np.random.default_rng(0)
    n, d = 120_000, 32
    labels = rng.integers(0, 10, n)
    X = (rng.normal(size=(n, d)) + labels[:, None]).astype(np.float32)
    p = project(X, labels, ProjectionConfig(method="pca", max_points=5000))
    assert len(p.sample) == 5000 and p.coords.shape == (5000, 2)
    assert "5000" in p.note and str(n) in p.note.replace(",", "")
    kept = np.bincount(labels[p.sample], minlength=10) / 5000
    assert np.allclose(kept, np.bincount(labels, minlength=10) / n, atol=0.002)
    sep = separability(X, labels)
    assert sep["n_used"] < n and sep["note"]
    tally.facts["120,000 x 32 features, projection cap 5,000"] = f"stratified sample of {len(p.sample)}, stated: \"{p.note}\""
    tally.facts["separability on 120,000 samples"] = f"silhouette/k-NN on a stated subsample of {sep['n_used']}"


def test_out_of_memory_during_extraction_halves_the_batch(good_checkpoints, tally):
    ck = load_checkpoint(good_checkpoints["baseline"])
    split = build_splits(DatasetSpec.from_dict(ck.meta.dataset)).test
    calls = []

    def tight_memory(model, x):
        calls.append(x.shape[0])
        if x.shape[0] > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return model(x)

    f = extract_features(ck, split, ["embedding"], InferenceOptions(device="cpu", batch_size=64), forward=tight_memory)
    reference = extract_features(ck, split, ["embedding"], InferenceOptions(device="cpu", batch_size=64))
    assert f.batch_size == 8 and f.oom_retries == 3
    np.testing.assert_allclose(f.layers["embedding"], reference.layers["embedding"], rtol=1e-5, atol=1e-6)
    assert (f.preds == reference.preds).all()
    tally.facts["device out of memory during extraction (simulated)"] = (
        f"batch 64 -> 32 -> 16 -> 8, {f.oom_retries} retries stated, features identical to an unconstrained run")
