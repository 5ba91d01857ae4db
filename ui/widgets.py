"""Widgets that return config objects."""

from __future__ import annotations

import streamlit as st

from asl_core.projection import ProjectionConfig

COLOR_BY = {"true class": "true", "prediction": "pred", "correct / wrong": "correct", "confidence": "confidence"}
SPLITS = ("test", "val", "train")


def projection_config(prefix: str, container=None) -> ProjectionConfig:
    """Projection method and its parameters; keys are ``{prefix}_method`` etc."""
    c = container or st
    method = c.selectbox("Projection", ("pca", "umap", "tsne"), key=f"{prefix}_method",
                         format_func={"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}.get)
    kwargs: dict = {}
    if method == "tsne":
        kwargs["perplexity"] = float(c.slider("Perplexity", 5, 100, 30, key=f"{prefix}_perplexity"))
    if method == "umap":
        kwargs["n_neighbors"] = int(c.slider("Neighbours", 2, 100, 15, key=f"{prefix}_neighbors"))
        kwargs["min_dist"] = float(c.slider("Min distance", 0.0, 1.0, 0.1, 0.05, key=f"{prefix}_min_dist"))
    kwargs["seed"] = int(c.number_input("Seed", 0, 10_000, 0, key=f"{prefix}_seed"))
    kwargs["max_points"] = int(c.number_input("Max points", 100, 200_000, 20_000, step=1000, key=f"{prefix}_max_points",
                                              help="Above this a stratified sample is projected (the page says so)."))
    kwargs["standardize"] = bool(c.checkbox("Standardise features", True, key=f"{prefix}_standardize"))
    return ProjectionConfig(method=method, **kwargs)


def color_by(key: str, container=None) -> str:
    c = container or st
    label = c.radio("Colour by", list(COLOR_BY), key=key, horizontal=True)
    return COLOR_BY[label]
