"""Extraction: shapes, names, pooling, errors, mode restoring, simulated out-of-memory."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from asl_core.data import normalize
from asl_core.errors import LayerError
from asl_core.engine.features import extract_features
from asl_core.engine.options import InferenceOptions


def test_shapes_and_names(ckpts, engine_splits):
    split = engine_splits.test
    f = extract_features(ckpts[0], split, ["block3", "embedding", "fc"], InferenceOptions(device="cpu"),
                         split_name="test")
    n = len(split)
    assert list(f.layers) == ["block3", "embedding", "fc"]
    assert f.layers["block3"].shape == (n, 128) and f.layers["embedding"].shape == (n, 64)
    assert all(v.dtype == np.float32 for v in f.layers.values())
    assert f.logits.shape == (n, 10) and f.preds.shape == (n,) and f.confidence.shape == (n,)
    np.testing.assert_array_equal(f.labels, split.y.numpy())
    np.testing.assert_array_equal(f.index, split.index.numpy())
    np.testing.assert_allclose(f.layers["fc"], f.logits, atol=1e-5)
    np.testing.assert_array_equal(f.preds, f.logits.argmax(1))
    assert np.all((f.confidence > 0) & (f.confidence <= 1)) and f.split == "test" and f.oom_retries == 0


def test_conv_maps_are_average_pooled(ckpts, engine_splits):
    ck, split = ckpts[0], engine_splits.test
    f = extract_features(ck, split, ["block2"], InferenceOptions(device="cpu", batch_size=16))
    m = ck.model.eval()
    with torch.no_grad():
        x = normalize(split.x, ck.meta.mean, ck.meta.std)
        expected = m.block2(m.block1(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(f.layers["block2"], expected, rtol=1e-4, atol=1e-5)


def test_unknown_layer_lists_valid_names(ckpts, engine_splits):
    with pytest.raises(ValueError, match="valid layers: .*embedding") as info:
        extract_features(ckpts[0], engine_splits.test, ["nope"], InferenceOptions(device="cpu"))
    assert isinstance(info.value, LayerError)


def test_train_mode_restored(ckpts, engine_splits):
    ck = ckpts[0]
    ck.model.train()
    f_train_mode = extract_features(ck, engine_splits.test, ["embedding"], InferenceOptions(device="cpu"))
    assert ck.model.training
    ck.model.eval()
    f_eval = extract_features(ck, engine_splits.test, ["embedding"], InferenceOptions(device="cpu"))
    assert not ck.model.training
    np.testing.assert_allclose(f_train_mode.logits, f_eval.logits, atol=1e-6)  # BatchNorm ran in eval mode


def test_oom_halves_the_batch_and_says_so(ckpts, engine_splits, caplog):
    calls = []

    def tight_memory(model, x):
        calls.append(x.shape[0])
        if x.shape[0] > 8:
            raise torch.OutOfMemoryError("simulated")
        return model(x)

    ref = extract_features(ckpts[0], engine_splits.test, ["embedding"], InferenceOptions(device="cpu", batch_size=8))
    with caplog.at_level(logging.WARNING, logger="asl_core.engine.features"):
        f = extract_features(ckpts[0], engine_splits.test, ["embedding"], InferenceOptions(device="cpu", batch_size=32),
                             forward=tight_memory)
    assert calls[:3] == [32, 16, 8] and f.oom_retries == 2 and f.batch_size == 8
    assert "out of memory" in caplog.text and len(f.notes) == 2
    np.testing.assert_allclose(f.layers["embedding"], ref.layers["embedding"], atol=1e-6)


@pytest.mark.parametrize("bad", [{"amp": "fp8"}, {"batch_size": 0}, {"batch_size": True}, {"batch_size": 2.0},
                                 {"workers": -1}])
def test_bad_options_are_refused_where_they_are_made(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        InferenceOptions(**bad)


def test_options_are_one_frozen_value(ckpts, engine_splits):
    opts = InferenceOptions(device="cpu", batch_size=8)
    with pytest.raises(AttributeError):
        opts.batch_size = 16  # type: ignore[misc]
    with pytest.raises(TypeError, match="InferenceOptions"):  # the old keyword style is not silently taken
        extract_features(ckpts[0], engine_splits.test, ["embedding"], "cpu")
    f = extract_features(ckpts[0], engine_splits.test, ["embedding"], opts)
    assert f.batch_size == 8 and f.device == "cpu"


def test_concurrent_extractions_do_not_mix(ckpts, engine_splits):
    """Two app sessions sharing one cached model: hooks are model-wide, so calls are serialised."""
    from concurrent.futures import ThreadPoolExecutor

    ref = extract_features(ckpts[0], engine_splits.test, ["block1", "embedding"], InferenceOptions(device="cpu"))
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda layer: extract_features(ckpts[0], engine_splits.test, [layer],
                                                            InferenceOptions(device="cpu", batch_size=4)),
                             ["block1", "embedding"] * 3))
    for f in runs:
        (name, value), = f.layers.items()
        np.testing.assert_allclose(value, ref.layers[name], atol=1e-6)
