"""Fixtures for the core tests: tiny data and tiny trained checkpoints (the engine tests use
two one-epoch digits_cnn checkpoints on a tiny digits split)."""

from __future__ import annotations

import pytest

from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.training import TrainConfig, train


@pytest.fixture(scope="session")
def tiny_spec():
    """Digits with 12 training samples for the largest class, a 3x tail, light corruption."""
    return get_spec("digits-hard", samples_per_class=12, imbalance=3.0, val_per_class=5, test_per_class=6)

# --------------------------------------------------------------------------- engine


@pytest.fixture(scope="session")
def engine_spec():
    return get_spec("digits", samples_per_class=10, val_per_class=5, test_per_class=5)


@pytest.fixture(scope="session")
def engine_splits(engine_spec):
    return build_splits(engine_spec)


@pytest.fixture(scope="session")
def ckpt_paths(tmp_path_factory, engine_spec, engine_splits):
    """Paths of two one-epoch digits_cnn checkpoints (seeds 0 and 1)."""
    folder = tmp_path_factory.mktemp("engine_ckpts")
    paths = []
    for seed, method in ((0, "baseline"), (1, "asloss")):
        result = train(TrainConfig(epochs=1, seed=seed, method=method), engine_spec, splits=engine_splits, progress=False,
                       name=f"m{seed}")
        paths.append(save_checkpoint(result.model, result.meta, folder / f"m{seed}"))
    return paths


@pytest.fixture()
def ckpts(ckpt_paths):
    return [load_checkpoint(p) for p in ckpt_paths]
