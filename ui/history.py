"""Small views of checkpoint metadata for the Checkpoints page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from asl_core.checkpoint import CheckpointMeta
from asl_core.errors import UserError
from asl_core.models import list_layers
from asl_core.report.figures import confusing_set_figure, pair_count_figure
from ui import figmemo, library, widgets


def summary(meta: CheckpointMeta) -> dict[str, Any]:
    """The metadata a person reads first; the weights' hash is shortened."""
    metrics = {split: {k: round(v, 4) for k, v in (meta.metrics or {}).get(split, {}).items() if isinstance(v, float)}
               for split in ("val", "test") if split in (meta.metrics or {})}
    return {
        "method": meta.method, "architecture": meta.arch, "classes": list(meta.class_names),
        "input shape": list(meta.input_shape),
        **({"channel repeat": f"grayscale data, channel repeated {meta.channel_repeat}x"} if meta.channel_repeat > 1 else {}),
        "dataset": meta.dataset, "layers (ASLoss weights)": meta.layers,
        "hyperparameters": meta.hyperparams, "best epoch": meta.best_epoch, "metrics": metrics,
        "parents": meta.parents, "diagnostics": meta.diagnostics, "created": meta.created,
        "content hash": meta.content_hash[:16],
        "versions": meta.versions, "source": meta.source,
    }


def layers(path: Path) -> None:
    """The layers a person can pick on Explore/Compare, with kind and feature width."""
    with st.expander("Layers (name · kind · feature width)"):
        try:
            ckpt = library.load_model(path)
        except UserError as exc:
            st.error(str(exc))
            return
        label = widgets.layer_format_func(ckpt)
        st.markdown("\n".join(f"- `{label(name)}`" for name in list_layers(ckpt.model)))


def mechanism(meta: CheckpointMeta) -> None:
    """Did the method's mechanism fire? Warnings first (loud), then the figures per epoch."""
    for warning in meta.warnings:
        st.error(f"**{warning}**", icon="⚠️")
    diag = meta.diagnostics or {}
    for note in diag.get("dataset_notes", []):  # e.g. image files skipped as unreadable, named
        st.warning(f"Data: {note}")
    figures = [f for f in (figmemo.memo(confusing_set_figure, meta.history),
                           figmemo.memo(pair_count_figure, meta.history, meta.class_names)) if f]
    if not figures:
        return
    st.subheader("Mechanism")
    parts = []
    if "confusing_set_mean" in diag:
        parts.append(f"mean |S| {diag['confusing_set_mean']:.2f} over training, |S| = 1 for "
                     f"{diag['confusing_set_singleton_fraction']:.0%} of samples")
    if "teacher_train_accuracy" in diag:
        mode = (meta.parents or {}).get("teacher_mode", "live")
        parts.append(f"the teacher ({mode}) was right on {diag['teacher_train_accuracy']:.0%} of the training batches' samples")
    if parts:
        st.caption("; ".join(parts) + ". A teacher that is always right gives |S| = 1: ClonalNet then learns nothing from it.")
    for i, fig in enumerate(figures):  # one under the other: side by side in this column they were too narrow to read
        st.plotly_chart(fig, key=f"ckpt_mechanism_{i}_{meta.content_hash[:12]}")
