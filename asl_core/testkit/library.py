"""A tiny checkpoint library for the app tests: baseline, asloss and clonal trained for two
epochs on a small digits-hard, saved into a folder (a few seconds on one CPU core)."""

from __future__ import annotations

from pathlib import Path

from asl_core.checkpoint import load_checkpoint, save_checkpoint
from asl_core.data import build_splits, get_spec
from asl_core.training import TrainConfig, train

SPEC = dict(val_per_class=5, test_per_class=10)
METHODS = ("baseline", "asloss", "clonal")


def make_library(folder: Path, epochs: int = 2) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    spec = get_spec("digits-hard", **SPEC)
    splits = build_splits(spec)
    paths: dict[str, Path] = {}
    teacher = None
    for method in METHODS:
        config = TrainConfig(method=method, epochs=epochs, batch_size=64, seed=0, device="cpu")
        result = train(config, spec, teacher=teacher, splits=splits, progress=False, name=method)
        paths[method] = save_checkpoint(result.model, result.meta, folder / method)
        if method == "baseline":
            teacher = load_checkpoint(paths[method])
    return paths
