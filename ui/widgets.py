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


# every projection widget's default; the page seeds them (from the URL or these) before drawing
PROJECTION_DEFAULTS = {"method": "pca", "perplexity": 30, "neighbors": 15, "min_dist": 0.1, "seed": 0, "max_points": 20_000,
                       "standardize": True}
# url name -> (widget name, parser)
PROJECTION_URL = {"proj": ("method", str), "perplexity": ("perplexity", int), "neighbors": ("neighbors", int),
                  "min_dist": ("min_dist", float), "seed": ("seed", int), "max_points": ("max_points", int),
                  "standardize": ("standardize", lambda t: t == "1")}
PROJECTIONS = ("pca", "umap", "tsne")
PROJECTION_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}  # as the widget says them, in captions too
LOOK_DEFAULTS = {"marker_size": 6, "opacity": 0.8}


def _in_range(lo, hi, parse):
    def check(text: str):
        value = parse(text)
        if not lo <= value <= hi:
            raise ValueError(f"must lie between {lo} and {hi}")
        return value
    return check


def seed_projection(url, prefix: str) -> None:
    """Projection widgets from the URL (``proj``, ``perplexity``, ``neighbors``, ``min_dist``, ``seed``,
    ``max_points``, ``standardize``) or their defaults."""
    limits = {"perplexity": (5, 100), "neighbors": (2, 100), "min_dist": (0.0, 1.0), "seed": (0, 10_000),
              "max_points": (100, 200_000)}
    for name, (widget, parse) in PROJECTION_URL.items():
        options = PROJECTIONS if widget == "method" else None
        if widget in limits:
            parse = _in_range(*limits[widget], parse)
        url.seed(S.proj_key(prefix, widget), name, PROJECTION_DEFAULTS[widget], options=options, parse=parse)


def seed_look(url, prefix: str, num_classes: int) -> None:
    """Point size, opacity and isolated classes from the URL (``size``, ``opacity``, ``iso``) or defaults."""
    url.seed(S.look_key(prefix, "marker_size"), "size", LOOK_DEFAULTS["marker_size"], parse=_in_range(2, 14, int))
    url.seed(S.look_key(prefix, "opacity"), "opacity", LOOK_DEFAULTS["opacity"], parse=_in_range(0.1, 1.0, float))
    url.seed(S.look_key(prefix, "isolate"), "iso", [],
             parse=lambda t: [c for c in (int(v) for v in t.split(",") if v) if 0 <= c < num_classes])
    url.seed(S.look_key(prefix, "find"), "find", "", parse=lambda t: t[:MAX_FIND])


MAX_FIND = 200  # characters of the class finder (a link's value is cut there)


def find_classes(class_names, text: str) -> list[int]:
    """The classes whose name contains any comma-separated term of ``text`` (case-insensitive),
    in class order: "terrier, retriever" finds every terrier and retriever of ImageNet."""
    terms = [t.strip().casefold() for t in str(text).split(",") if t.strip()]
    return [c for c, name in enumerate(class_names) if any(t in str(name).casefold() for t in terms)]


def projection_config(prefix: str, container=None) -> ProjectionConfig:
    """Projection method and its parameters; keys are ``{prefix}_proj_method`` etc. The values
    come from session state (``seed_projection`` first)."""
    c = container or st
    values = {"method": c.selectbox("Projection", PROJECTIONS, key=S.proj_key(prefix, "method"),
                                    format_func=PROJECTION_NAMES.get)}
    if values["method"] == "tsne":
        values["perplexity"] = c.slider("Perplexity", 5, 100, key=S.proj_key(prefix, "perplexity"))
    if values["method"] == "umap":
        values["neighbors"] = c.slider("Neighbours", 2, 100, key=S.proj_key(prefix, "neighbors"))
        values["min_dist"] = c.slider("Min distance", 0.0, 1.0, step=0.05, key=S.proj_key(prefix, "min_dist"))
    values["seed"] = c.number_input("Seed", 0, 10_000, key=S.proj_key(prefix, "seed"))
    values["max_points"] = c.number_input("Max points", 100, 200_000, step=1000, key=S.proj_key(prefix, "max_points"),
                                          help="Above this a stratified sample is projected (the page says so).")
    values["standardize"] = c.checkbox("Standardise features", key=S.proj_key(prefix, "standardize"))
    return config_from(values)


def config_from(values: dict) -> ProjectionConfig:
    """The projection the widgets' ``values`` (named as in :data:`PROJECTION_DEFAULTS`) describe;
    ``config_from(PROJECTION_DEFAULTS)`` is what a first visit projects."""
    method = values["method"]
    kwargs: dict = {}
    if method == "tsne":
        kwargs["perplexity"] = float(values["perplexity"])
    if method == "umap":
        kwargs["n_neighbors"] = int(values["neighbors"])
        kwargs["min_dist"] = float(values["min_dist"])
    return ProjectionConfig(method=method, seed=int(values["seed"]), max_points=int(values["max_points"]),
                            standardize=bool(values["standardize"]), **kwargs)


def scatter_look(prefix: str, class_names, method: str, container=None):
    """Point size, opacity and classes to isolate (in every linked view); returns a ``views.Look``."""
    from ui.views import Look

    c = container or st
    a, b, d, e = c.columns([1, 1, 2, 1.4])
    size = a.slider("Point size", 2, 14, key=S.look_key(prefix, "marker_size"))
    opacity = b.slider("Opacity", 0.1, 1.0, step=0.05, key=S.look_key(prefix, "opacity"))
    names = [str(n) for n in class_names]
    isolate = d.multiselect("Isolate classes (all views)", list(range(len(names))), format_func=lambda i: names[i],
                            key=S.look_key(prefix, "isolate"), placeholder="all classes",
                            help="Only these classes in colour, in every view; the rest grey. Colouring by prediction "
                                 "isolates by predicted class.")
    find = e.text_input("Find classes (legend)", key=S.look_key(prefix, "find"), max_chars=MAX_FIND,
                        placeholder="e.g. terrier, 3", help="Every class whose name contains a term (comma-separated, "
                        "any case) joins the isolated classes, in every view and in the legend.")
    found = find_classes(names, find) if find.strip() else []
    if find.strip():
        if found:
            e.caption(f"{len(found):,} class{'es' if len(found) != 1 else ''} match")
        else:
            e.caption(f"no class name contains {find.strip()!r}")
    chosen = tuple(dict.fromkeys([*isolate, *found]))
    label = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}.get(method, method)
    return Look(marker_size=size, opacity=opacity, isolate=chosen or None, axis_titles=(f"{label} 1", f"{label} 2"))


def seed_color(url, key: str, colors: dict[str, str] | None = None) -> None:
    """``color=true|pred|correct|confidence`` (the labels are accepted too); ``colors`` maps a page's
    labels to their short URL names (Explore's :data:`COLOR_BY` by default)."""
    colors = COLOR_BY if colors is None else colors
    short = {v: k for k, v in colors.items()}

    def parse(text: str) -> str:
        if text in colors:
            return text
        if text in short:
            return short[text]
        raise ValueError(f"not one of {', '.join(short)}")

    url.seed(key, "color", list(colors)[0], parse=parse, dump=colors.get)


def color_by(key: str, container=None) -> str:
    c = container or st
    label = c.radio("Colour by", list(COLOR_BY), key=key, horizontal=True)
    return COLOR_BY[label]


def metric_columns(*names: str, digits: int = 3) -> dict:
    """``column_config`` printing the library's metric columns with the same decimals (the table
    mixed 0.781 and 0.8145)."""
    names = names or ("test accuracy", "test macro-F1")
    return {n: st.column_config.NumberColumn(n, format=f"%.{digits}f") for n in names}


SHORT_KINDS = {"AdaptiveAvgPool2d": "AvgPool", "AdaptiveMaxPool2d": "MaxPool", "BatchNorm2d": "BatchNorm",
               "BatchNorm1d": "BatchNorm", "Sequential": "Seq"}


def short_kind(kind: str) -> str:
    """A layer kind short enough for the sidebar (``avgpool · AdaptiveAvgPool2d · 512`` was cut)."""
    return SHORT_KINDS.get(kind, kind)


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
        parts = [[short_kind(p[0]), *p[1:]] if p else p for p in parts]
        columns = [list(dict.fromkeys(p[i] for p in parts if i < len(p))) for i in range(max(map(len, parts)))]
        return " · ".join([name, *("/".join(c) for c in columns)])

    return label
