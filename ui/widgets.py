"""Widgets that return config objects."""

from __future__ import annotations

import streamlit as st

from asl_core.checkpoint import LoadedCheckpoint
from asl_core.engine.features import model_lock
from asl_core.engine.projection import ProjectionConfig
from asl_core.models import layer_labels
from ui import state as S

COLOR_BY = {"true class": "true", "prediction": "pred", "correct / wrong": "correct", "confidence": "confidence"}
SPLITS = ("test", "val", "train")
# (label, key in the engine's separability dict, format)
SEPARABILITY = (("silhouette ↑", "silhouette", ".3f"), ("Davies-Bouldin ↓", "davies_bouldin", ".3f"),
                ("Calinski-Harabasz ↑", "calinski_harabasz", ".1f"), ("k-NN accuracy ↑", "knn_accuracy", ".3f"),
                ("within/between ↓", "within_between_ratio", ".3f"))


def projection_config(prefix: str, container=None) -> ProjectionConfig:
    """Projection method and its parameters; keys are ``{prefix}_method`` etc."""
    c = container or st
    method = c.selectbox("Projection", ("pca", "umap", "tsne"), key=S.proj_key(prefix, "method"),
                         format_func={"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}.get)
    kwargs: dict = {}
    if method == "tsne":
        kwargs["perplexity"] = float(c.slider("Perplexity", 5, 100, 30, key=S.proj_key(prefix, "perplexity")))
    if method == "umap":
        kwargs["n_neighbors"] = int(c.slider("Neighbours", 2, 100, 15, key=S.proj_key(prefix, "neighbors")))
        kwargs["min_dist"] = float(c.slider("Min distance", 0.0, 1.0, 0.1, 0.05, key=S.proj_key(prefix, "min_dist")))
    kwargs["seed"] = int(c.number_input("Seed", 0, 10_000, 0, key=S.proj_key(prefix, "seed")))
    kwargs["max_points"] = int(c.number_input("Max points", 100, 200_000, 20_000, step=1000, key=S.proj_key(prefix, "max_points"),
                                              help="Above this a stratified sample is projected (the page says so)."))
    kwargs["standardize"] = bool(c.checkbox("Standardise features", True, key=S.proj_key(prefix, "standardize")))
    return ProjectionConfig(method=method, **kwargs)


def color_by(key: str, container=None) -> str:
    c = container or st
    label = c.radio("Colour by", list(COLOR_BY), key=key, horizontal=True)
    return COLOR_BY[label]


def table_layers(layers: list[str], picked: str) -> list[str]:
    """Default rows of the separability table: the picked layer and the logits (``fc``) when
    there; each extra layer costs ~0.15 s per model on 500 samples, so more are opt-in."""
    return list(dict.fromkeys([picked, *[name for name in ("fc", "classifier") if name in layers]]))


@st.cache_data(show_spinner=False, max_entries=64)
def _layer_labels(content_hash: str, input_shape: tuple[int, int, int], _model) -> dict[str, str]:
    with model_lock(_model):  # the forward pass must not meet another session's extraction
        return layer_labels(_model, input_shape)


def layer_format_func(*ckpts: LoadedCheckpoint):
    """A ``format_func`` for a layer selectbox: ``embedding.1 · ReLU · 64`` (name, kind, feature
    width), computed once per checkpoint; a name it does not know is shown as it is. Given several
    checkpoints (Compare), parts that differ are joined: ``embedding.1 · Linear · 64/32``.

        st.selectbox("Layer", layers, format_func=widgets.layer_format_func(model), key=...)
        st.selectbox("Layer (all models)", layers, format_func=widgets.layer_format_func(*models), key=...)"""
    per_model = [_layer_labels(c.meta.content_hash, tuple(c.meta.input_shape), c.model) for c in ckpts]

    def label(name: str) -> str:
        parts = [labels[name].split(" · ")[1:] for labels in per_model if name in labels]
        if not parts:
            return name
        columns = [list(dict.fromkeys(p[i] for p in parts if i < len(p))) for i in range(max(map(len, parts)))]
        return " · ".join([name, *("/".join(c) for c in columns)])

    return label
