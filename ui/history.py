"""Small views of checkpoint metadata for the Checkpoints page."""

from __future__ import annotations

from typing import Any

from asl_core.checkpoint import CheckpointMeta


def summary(meta: CheckpointMeta) -> dict[str, Any]:
    """The metadata a person reads first; the weights' hash is shortened."""
    metrics = {split: {k: round(v, 4) for k, v in (meta.metrics or {}).get(split, {}).items() if isinstance(v, float)}
               for split in ("val", "test") if split in (meta.metrics or {})}
    return {
        "method": meta.method, "architecture": meta.arch, "classes": list(meta.class_names),
        "input shape": list(meta.input_shape), "dataset": meta.dataset, "layers (ASLoss weights)": meta.layers,
        "hyperparameters": meta.hyperparams, "best epoch": meta.best_epoch, "metrics": metrics,
        "parents": meta.parents, "created": meta.created, "content hash": meta.content_hash[:16],
        "versions": meta.versions, "source": meta.source,
    }

