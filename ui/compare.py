"""The Compare page's parts: the sidebar, the headline, the first screen (aligned views, confusion
matrices, what is highlighted) and the panels a user opens below it (per class, confused pairs,
agreement, layer similarity, what moved, regression clusters, separability, confusion change and
flips, the sample table). A panel is computed and drawn only when it is open; which are open is in
the URL (``panels=``). Clicking a pair, an agreement cell or a cluster highlights its samples in
every view, like a confusion cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from asl_core.engine import between
from asl_core.models import embedding_layer
from asl_core.report.figures import delta_figure, layer_metrics_figure, per_class_delta_figure
from asl_core.report.tables import (filter_samples, flip_table, headline_lines, mcnemar_sentence, neighbour_sentence,
                                    per_class_table, summary_table)
from ui import analysis, downloads, figmemo, images, library, selection, views, widgets
from ui import state as S
from ui.errors import user_errors

P = S.CMP_PREFIX
PANELS = {"per_class": "Per class", "pairs": "Confused pairs", "agreement": "Agreement", "layers": "Layer similarity",
          "moved": "What moved", "clusters": "Regression clusters", "separability": "Separability",
          "flips": "Confusion change & flips", "samples": "Sample table"}
FULL_MATRIX_MAX = 40    # above this many classes a confusion matrix shows a block (zoom), never the whole
DEFAULT_BLOCK = 25
CLASS_PAGE = 25         # per-class tables: rows per page
FLIP_COLORS = (("right in both", "#9ecae1"), ("wrong in both", "#7f7f7f"), ("fixed (wrong → right)", "#2ca02c"),
               ("broken (right → wrong)", "#d62728"))
COLOR_BY = {**widgets.COLOR_BY, "flip type": "flip", "Δ p(true class)": "dconf", "neighbourhood overlap": "overlap",
            "regression cluster": "cluster"}
# the most worsened regression clusters get these colours (worst first), every other cluster grey
CLUSTER_COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#1f77b4")


@dataclass(frozen=True)
class Sidebar:
    paths: list
    split: str
    layer: str
    config: object
    metric_layers: list[str]
    layer_label: Callable[[str], str]


def sidebar(url, files: list[str], folder) -> Sidebar:
    """The models, split, layer, projection and separability layers, seeded from the URL."""

    def parse_models(text: str) -> list[str]:
        found, unknown = library.resolve_models(files, text)
        if unknown:
            url.warnings.append(f"`models=` names {', '.join(repr(u) for u in unknown)}, not in the library "
                                f"(it has {', '.join(f.removesuffix('.safetensors') for f in files)}).")
        if len(found) < 2:
            raise ValueError("a comparison needs two or three models of the library")
        return found[:3]

    url.seed(S.CMP_MODELS, "models", library.default_comparison(files), parse=parse_models,
             dump=lambda fs: [f.removesuffix(".safetensors") for f in fs])
    chosen = st.multiselect("Models (first = reference)", files, max_selections=3, key=S.CMP_MODELS)
    if len(chosen) < 2:
        st.warning("Pick 2 or 3 models.")
        st.stop()
    paths = [library.library_path(folder, f) for f in chosen]
    st.session_state["_cmp_paths"] = paths  # the layer-similarity panel extracts every layer of these
    url.seed(S.CMP_SPLIT, "split", "test", options=widgets.SPLITS)
    split = st.selectbox("Split", widgets.SPLITS, key=S.CMP_SPLIT)
    layers = analysis.shared_layers(paths)
    if not layers:
        st.error("These models share no layer names; compare models of one architecture family.")
        st.stop()
    url.seed(S.CMP_LAYER, "layer", default_layer(library.load_model(paths[0]), layers), options=layers)
    layer_label = widgets.layer_format_func(*[library.load_model(p) for p in paths])
    layer = st.selectbox("Layer (all models)", layers, key=S.CMP_LAYER, help="Only layers every chosen model has.",
                         format_func=layer_label)
    widgets.seed_projection(url, P)
    config = widgets.projection_config(P)
    url.seed(S.CMP_METRIC_LAYERS, "metric_layers", widgets.table_layers(layers, layer),
             parse=lambda t: [v for v in t.split(",") if v in layers])
    metric_layers = st.multiselect("Layers in the separability table", layers, key=S.CMP_METRIC_LAYERS,
                                   format_func=layer_label)
    return Sidebar(paths, split, layer, config, metric_layers, layer_label)


def default_layer(reference, layers: list[str]) -> str:
    """The layer a first visit projects: the reference's embedding layer when every model has it."""
    default = embedding_layer(reference.meta.arch, layers)
    return default if default in layers else layers[0]


def warm_first_visit(folder, progress: Callable[[str, float], None] | None = None):
    """Compute what a first visit to Compare opens (the default models, the test split, the
    default layer, projection and separability layers, exactly as :func:`sidebar` seeds them) into
    the disk cache, so that a freshly started server opens it without extracting or projecting.
    ``asl-lens demo`` runs it after training. Returns the comparison, or ``None`` when the library
    has fewer than two models or they share no layer."""
    from asl_core.checkpoint import list_checkpoints, load_checkpoint
    from asl_core.engine.analysis import common_layers, compare

    files = [p.name for p in list_checkpoints(Path(folder))]
    if len(files) < 2:
        return None
    ckpts = [load_checkpoint(library.library_path(Path(folder), f)) for f in library.default_comparison(files)]
    layers = common_layers(ckpts)
    if not layers:
        return None
    layer = default_layer(ckpts[0], layers)
    return compare(ckpts, split="test", layer=layer, projection=widgets.config_from(widgets.PROJECTION_DEFAULTS),
                   cache=analysis.disk_cache(), progress=progress,
                   metric_layers=list(dict.fromkeys([layer, *widgets.table_layers(layers, layer)])))


# --------------------------------------------------------------------------- headline


def headline(cmp) -> None:
    """What changed against the reference, and is it real: one card per compared model."""
    ref = cmp.reference
    st.subheader(f"What changed against {ref.name}")
    for h, col in zip(analysis.headlines(cmp), st.columns(len(cmp.models) - 1)):
        with col.container(border=True):
            st.markdown(f"#### {h.model}")
            st.markdown("\n\n".join(headline_lines(h, cmp.class_names)))
    st.dataframe(summary_table(cmp), hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(k, format="%.3f")
                                for k in ("accuracy", "macro-F1", "trustworthiness")})


# --------------------------------------------------------------------------- colours of the linked views


def other_model(cmp):
    """The model the pairwise views compare with the reference (``b=`` in the URL)."""
    names = [m.name for m in cmp.models[1:]]
    name = st.session_state.get(S.CMP_B)
    return next((m for m in cmp.models[1:] if m.name == name), cmp.models[1]) if names else None


def paints(cmp, color_by: str, overlap_k: int = 10) -> list[dict] | None:
    """Per view, what ``flip``/``dconf``/``overlap`` colour each projected point by. The same sample
    gets the same colour in every view (all three are about the reference against model B)."""
    if color_by not in ("flip", "dconf", "overlap", "cluster"):
        return None
    b = other_model(cmp)
    ref = cmp.reference
    if color_by == "cluster":
        n = int(st.session_state.get(S.CMP_N_CLUSTERS) or 20)
        found = analysis.clusters(cmp, b, n)
        worst = [r for r in found.rows if r["change"] < 0][: len(CLUSTER_COLORS)]
        # the grey rest first, so that the worsened clusters are drawn over it
        codes = np.zeros(len(found.assign), dtype=int)
        for rank, r in enumerate(worst):
            codes[found.assign == r["cluster"]] = rank + 1
        full = {"codes": codes, "colors": ["#d0d0d0", *CLUSTER_COLORS[: len(worst)]],
                "names": ["every cluster (none got worse)" if not worst else "the other clusters"]
                + [f"cluster {r['cluster']}: {r['change']:+.2f} ({r['n']})" for r in worst],
                "title": f"regression clusters ({n}, {ref.name} → {b.name} accuracy change, samples)"}
        return [{**full, "codes": codes[m.projection.sample]} for m in cmp.models]
    if color_by == "flip":
        ra, rb = ref.features.correct, b.features.correct
        codes = np.where(ra & rb, 0, np.where(~ra & ~rb, 1, np.where(rb, 2, 3)))
        full = {"codes": codes, "names": [n for n, _ in FLIP_COLORS], "colors": [c for _, c in FLIP_COLORS],
                "title": f"{ref.name} → {b.name}"}
        return [{**full, "codes": codes[m.projection.sample]} for m in cmp.models]
    if color_by == "dconf":
        values = true_class_probability(b) - true_class_probability(ref)
        title, rng, scale = "Δ p(true)", (-1.0, 1.0), "RdBu"
        caption = (f"Colour: the change of the probability of the true class from {ref.name} to {b.name}: blue, "
                   f"{b.name} more sure of the right answer; red, less.")
    else:
        values = analysis.overlap(cmp, b, overlap_k)
        title, rng, scale = "overlap", (0.0, 1.0), "Viridis"
        caption = (f"Colour: how many of each sample's {overlap_k} nearest neighbours (full-dimensional `{cmp.layer}`) "
                   f"{ref.name} and {b.name} share (Jaccard): dark purple 0 = all new, yellow 1 = the same.")
    return [{"values": values[m.projection.sample], "title": title, "range": rng, "scale": scale, "caption": caption}
            for m in cmp.models]


def true_class_probability(m) -> np.ndarray:
    f = m.features
    z = f.logits - f.logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    return p[np.arange(len(f.labels)), f.labels]


# --------------------------------------------------------------------------- confusion matrices, many classes


def class_order(cmp, normalized: bool) -> tuple[list[int], str]:
    """The order of the matrices' classes (``order=index|clustered``) and its caption."""
    if st.session_state.get(S.CMP_ORDER) == "clustered":
        order = analysis.cluster_order(cmp)
        return order, "ordered by clustering the reference's confusion: classes confused with each other sit together"
    return list(range(cmp.num_classes)), ""


def confusion_block(cmp, url) -> tuple[list[int], bool]:
    """The order and zoom controls; returns the classes shown (in order) and whether normalised."""
    c = cmp.num_classes
    a, b, d, e = st.columns([1.2, 1.4, 1, 1])
    url.seed(S.CMP_NORMALIZED, "normalized", False, parse=lambda t: t == "1")
    a.toggle("Row-normalised", key=S.CMP_NORMALIZED, on_change=_needs_full_run)
    url.seed(S.CMP_ORDER, "order", "index" if c <= FULL_MATRIX_MAX else "clustered", options=["index", "clustered"])
    b.radio("Class order", ["index", "clustered"], key=S.CMP_ORDER, horizontal=True,
            help="clustered: hierarchical clustering of the reference's confusion, so confused classes sit together.")
    order, _ = class_order(cmp, st.session_state[S.CMP_NORMALIZED])
    if c <= FULL_MATRIX_MAX:  # drawn whole: no zoom to offer
        return order, bool(st.session_state[S.CMP_NORMALIZED])
    url.seed(S.CMP_ZOOM_SIZE, "block", DEFAULT_BLOCK, parse=views_int(2, FULL_MATRIX_MAX))
    url.seed(S.CMP_ZOOM_START, "from", 0, parse=views_int(0, max(c - 2, 0)))
    size = int(d.number_input("Classes shown", 2, FULL_MATRIX_MAX, key=S.CMP_ZOOM_SIZE,
                              help=f"A block of the matrix; above {FULL_MATRIX_MAX} classes it is never drawn whole."))
    start = int(e.number_input("From position", 0, max(c - size, 0), key=S.CMP_ZOOM_START,
                               help="Position in the class order where the block starts."))
    start = min(start, max(c - size, 0))
    shown = order[start : start + size]
    if len(shown) < c:
        st.caption(f"Showing classes {start + 1}-{start + len(shown)} of {c} in {st.session_state[S.CMP_ORDER]} order "
                   f"(at most {FULL_MATRIX_MAX} at a time: larger matrices cannot be read or clicked). Pick a confused pair in "
                   "the *Confused pairs* panel, or move *From position*.")
    return shown, bool(st.session_state[S.CMP_NORMALIZED])


def views_int(lo: int, hi: int):
    def parse(text: str) -> int:
        v = int(text)
        if not lo <= v <= hi:
            raise ValueError(f"must lie between {lo} and {hi}")
        return v
    return parse


# --------------------------------------------------------------------------- the first screen (a fragment)


def first_screen(cmp, url, split_data, layer: str) -> None:
    """Aligned views, confusion matrices, what is highlighted and its neighbours, then the opened
    panels: one fragment, so a lasso, a click or a panel's control reruns only this part."""
    names = [m.name for m in cmp.models]
    class_names = cmp.class_names
    warn_box = st.container()  # what the panels' link parameters were refused for (the page showed the rest)
    shown_warnings = len(url.warnings)
    views_box = st.container()
    pick_b(cmp, url)
    panel_picker(url)
    opened = [p for p in (st.session_state.get(S.CMP_PANELS) or []) if p in PANELS]
    table_ids: list[int] = []
    for key in opened:
        with st.container(border=True):
            with user_errors():
                got = PANEL_FUNCS[key](cmp, url, layer)
            if key == "samples":
                table_ids = got or []

    for warning in url.warnings[shown_warnings:]:
        warn_box.warning(warning)
    views.apply_link_highlight(url, P, cmp.reference.features.index, cmp.split,
                               cell_bounds=(len(cmp.models), cmp.num_classes))
    hl = views.highlight(cmp, P, table_ids)
    for name in ("hl", "cell", "sel"):
        url.set_extra(name, hl.url.get(name))

    with views_box:
        st.subheader("Projections (aligned)")
        top = st.columns([3, 1])
        widgets.seed_color(url, S.CMP_COLOR, COLOR_BY)
        label = top[0].radio("Colour by", list(COLOR_BY), key=S.CMP_COLOR, horizontal=True, on_change=_needs_full_run)
        color_by = COLOR_BY[label]
        if top[1].button("Clear highlight", key=S.CMP_CLEAR):
            views.clear_highlight(P)
            st.rerun(scope="fragment")
        widgets.seed_look(url, P, cmp.num_classes)
        look = widgets.scatter_look(P, class_names, cmp.projection_config.method)
        if color_by in ("true", "pred") and look.isolate is None and cmp.num_classes > views.MAX_LEGEND_CLASSES:
            picked = analysis.most_changed_classes(cmp, 10)
            look = views.Look(look.marker_size, look.opacity, tuple(picked), look.axis_titles)
            st.caption(f"{cmp.num_classes} classes are more than {views.MAX_LEGEND_CLASSES} distinct colours: the 10 classes "
                       "whose recall changed most are in colour, the rest grey. Pick your own in *Isolate classes* "
                       "(type to search) or *Find classes* (every name containing a term), or colour by flip type, "
                       "Δ p(true class) or neighbourhood overlap.")
        paint = paints(cmp, color_by)
        arrays = [dict(analysis.view_arrays(m), **({"paint": paint[i]} if paint else {})) for i, m in enumerate(cmp.models)]
        if color_by in ("flip", "dconf", "overlap", "cluster"):
            color_by = "category" if color_by in ("flip", "cluster") else "value"
        views.scatter_row(arrays, [views.view_title(m) for m in cmp.models], class_names, color_by, hl.ids, P,
                          source=hl.source_view, look=look)
        st.caption(views.TRUST_NOTE + " Drag a box or lasso: the same samples light up in every view.")
        st.session_state["_cmp_download_args"] = (color_by, paint)

        st.subheader("Confusion matrices")
        shown, normalized = confusion_block(cmp, url)
        st.caption("Click a cell: its samples (true = row, predicted = column) are highlighted in every view and listed "
                   "below.")
        views.confusion_row([m.confusion_normalized if normalized else m.confusion for m in cmp.models], names,
                            class_names, P, normalized=normalized, cell=hl.cell, classes=shown)

        st.subheader(hl.title, anchor="highlighted")
        if hl.ids:
            images.compare_inspector(split_data, hl.ids, cmp.models, class_names)
        if hl.ids and len(hl.ids) == 1:
            neighbours(cmp, url, split_data, hl.ids[0], layer)
        elif not hl.ids:
            st.caption("Select samples in a view, click a confusion cell, or open a panel below and click a pair, an "
                       "agreement cell, a cluster or table rows. One sample shows its neighbours in each model.")
    url.republish()


def _needs_full_run() -> None:
    st.session_state[S.CMP_FULL_RUN] = True


def neighbours(cmp, url, split_data, sample: int, layer: str) -> None:
    st.markdown("**Neighbours across models**")
    url.seed(S.CMP_NEIGHBOURS_K, "k", 8, parse=int)
    k = st.slider("Neighbours (k)", 3, 16, key=S.CMP_NEIGHBOURS_K)
    st.caption(f"The {k} nearest samples of #{sample} in each model's full-dimensional `{layer}` features "
               "(Euclidean; not the 2-D picture). ✗: a neighbour of another class.")
    with user_errors():
        for n in analysis.neighbours(cmp, sample, k):
            st.markdown(neighbour_sentence(n, cmp.class_names))
            images.neighbour_strip(split_data, n, cmp.class_names, columns=k + 1)


def panel_picker(url) -> None:
    url.seed(S.CMP_PANELS, "panels", [], parse=lambda t: [p for p in t.split(",") if p in PANELS])
    st.pills("Open panels (each is computed only when open)", list(PANELS), selection_mode="multi", key=S.CMP_PANELS,
             format_func=PANELS.get)


def pick_b(cmp, url) -> None:
    """Model B of the pairwise panels and colours, when three models are compared."""
    names = [m.name for m in cmp.models[1:]]
    url.seed(S.CMP_B, "b", names[0], options=names)
    if len(names) > 1:
        st.selectbox("Model B (agreement, pairs, similarity, what moved, clusters, flip colours)", names, key=S.CMP_B)


# --------------------------------------------------------------------------- panels


def _highlight_rows(key: str, ids_of_row: Callable[[int], tuple[list[int], str]]):
    """``on_select`` for a table whose rows stand for groups of samples: a clicked row highlights its
    samples everywhere; an emptied selection leaves another source's highlight alone."""
    def callback() -> None:
        rows = selection.table_rows(key)
        if rows:
            ids, title = ids_of_row(rows[0])
            views.set_ids(P, ids, title)
    return callback


def panel_per_class(cmp, url, layer: str) -> None:
    st.subheader("Per class", anchor="per-class")
    rows = analysis.per_class(cmp)
    class_names = cmp.class_names
    url.seed(S.CMP_DELTA_METRIC, "per_class", "F1", options=["F1", "recall", "precision"])
    metric = st.radio("Change in", ["F1", "recall", "precision"], horizontal=True, key=S.CMP_DELTA_METRIC)
    key = {"F1": "d_f1", "recall": "d_recall", "precision": "d_precision"}[metric]
    deltas = {m.name: [r[key] for r in rows if r["model"] == m.name] for m in cmp.models[1:]}
    change = np.max(np.abs(np.array(list(deltas.values()))), axis=0)
    counts = {r["class"]: (r["train_count"], r["tail"]) for r in rows}
    order = sorted(range(len(class_names)), key=lambda c: (-change[c], c))
    chart = order[:CLASS_PAGE] if len(class_names) > CLASS_PAGE else list(range(len(class_names)))
    labels = [f"{class_names[c]} · {counts[c][0]} train" + (" · tail" if counts[c][1] else "") for c in chart]
    st.plotly_chart(figmemo.memo(per_class_delta_figure, labels, {n: [v[c] for c in chart] for n, v in deltas.items()},
                                 metric=metric, reference=cmp.reference.name), key="cmp_per_class_delta")
    if len(chart) < len(class_names):
        st.caption(f"The {len(chart)} classes of {len(class_names)} whose {metric} changed most; all of them in the table.")
    st.caption("Training samples per class come from the dataset spec the checkpoints record; tail = the 3 smallest classes "
               "of a long-tailed training set. Test n is the number of samples of each class in this split.")
    table = per_class_table(rows, ({"F1": "f1"}.get(metric, metric),))
    table.insert(1, f"largest |Δ {metric}|", change.round(3))
    table = table.iloc[order].reset_index(drop=True)
    paged(url, table, S.CMP_CLASS_PAGE, "page", "classes, most changed first; click a column header to sort")


def paged(url, table: pd.DataFrame, page_key: str, param: str, what: str, **kwargs):
    """``table`` one page at a time when long (a page picker whose page is the URL's ``param``),
    every float with 3 decimals."""
    pages = max(1, -(-len(table) // CLASS_PAGE))
    if pages > 1:
        url.seed(page_key, param, 1, parse=views_int(1, pages))
        page = st.number_input(f"Page (of {pages}, {CLASS_PAGE} rows each)", 1, pages, key=page_key)
        part = table.iloc[(page - 1) * CLASS_PAGE : page * CLASS_PAGE]
        st.caption(f"Rows {(page - 1) * CLASS_PAGE + 1}-{(page - 1) * CLASS_PAGE + len(part)} of {len(table)} {what}.")
    else:
        part = table
        st.caption(f"{len(table)} {what}.")
    return st.dataframe(part, hide_index=True, width="stretch", column_config=views.decimals(part), **kwargs), part


def panel_pairs(cmp, url, layer: str) -> None:
    b = other_model(cmp)
    ref = cmp.reference
    st.subheader(f"Most confused pairs · {ref.name} and {b.name}", anchor="pairs")
    pairs = analysis.pairs(cmp, b)
    if not pairs:
        st.info("No sample is confused by either model.")
        return
    names = cmp.class_names
    top = pairs[:200]
    table = pd.DataFrame([{"true": names[p["true"]], "predicted as": names[p["pred"]], f"{ref.name} n": p["count_a"],
                           f"{b.name} n": p["count_b"], "change": p["change"], f"{ref.name} rate": p["rate_a"],
                           f"{b.name} rate": p["rate_b"]} for p in top])
    chart = top[:15]
    fig = go.Figure([go.Bar(y=[f"{names[p['true']]} → {names[p['pred']]}" for p in chart], x=[p["count_a"] for p in chart],
                            name=ref.name, orientation="h", marker_color="#9e9e9e"),
                     go.Bar(y=[f"{names[p['true']]} → {names[p['pred']]}" for p in chart], x=[p["count_b"] for p in chart],
                            name=b.name, orientation="h", marker_color="#1f77b4")])
    fig.update_layout(barmode="group", height=max(280, 26 * len(chart) + 110), yaxis={"autorange": "reversed"},
                      margin={"l": 10, "r": 10, "t": 60, "b": 30}, template="plotly_white",
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      title={"text": "true → predicted: samples", "font": {"size": 13}})
    left, right = st.columns([2, 3])
    left.plotly_chart(fig, key="cmp_pairs_chart", config={"displaylogo": False})
    y, fa, fb = ref.features.labels, ref.features.preds, b.features.preds
    index = ref.features.index

    def ids_of(row: int):
        p = top[row]
        mask = (y == p["true"]) & ((fa == p["pred"]) | (fb == p["pred"]))
        return ([int(v) for v in index[mask]],
                f"of true class {names[p['true']]} predicted as {names[p['pred']]} by {ref.name} or {b.name}")

    with right:
        st.caption(f"{len(pairs)} confused pairs, most confused first" + ("; the 200 largest listed" if len(pairs) > 200 else "")
                   + f". change = {b.name} − {ref.name}; rate = share of the true class's samples. Click a row: its samples "
                   "light up in every view.")
        st.dataframe(table, hide_index=True, width="stretch", height=min(420, 35 * (len(table) + 1) + 3),
                     column_config=views.decimals(table), key=S.CMP_PAIRS, on_select=_highlight_rows(S.CMP_PAIRS, ids_of),
                     selection_mode="single-row")


def panel_agreement(cmp, url, layer: str) -> None:
    b = other_model(cmp)
    ref = cmp.reference
    st.subheader(f"Agreement · {ref.name}'s prediction against {b.name}'s", anchor="agreement")
    m = between.agreement_matrix(ref.features.preds, b.features.preds, cmp.num_classes)
    agree = int(np.trace(m))
    n = int(m.sum())
    y = ref.features.labels
    both_right = int(((ref.features.preds == y) & (b.features.preds == y)).sum())
    st.markdown(f"They agree on **{agree} of {n}** samples ({agree / n:.1%}; both right on {both_right}) and disagree on "
                f"**{n - agree}**. The diagonal (agree) is grey; the coloured cells are the disagreements. Click a cell: "
                "those samples light up in every view.")
    shown = classes_for_matrix(cmp, m)
    sub = m[np.ix_(shown, shown)]
    names = [str(cmp.class_names[c]) for c in shown]
    fig = figmemo.memo(agreement_figure, sub, names, ref.name, b.name)
    st.plotly_chart(fig, key=S.CMP_AGREEMENT, on_select=_agreement_clicked(cmp, b), selection_mode=("points",),
                    config={"displaylogo": False})
    if len(shown) < cmp.num_classes:
        st.caption(f"The {len(shown)} classes with the most disagreements, of {cmp.num_classes}.")


def classes_for_matrix(cmp, m: np.ndarray) -> list[int]:
    if cmp.num_classes <= FULL_MATRIX_MAX:
        return list(range(cmp.num_classes))
    off = m.sum(0) + m.sum(1) - 2 * np.diag(m)
    return sorted(np.argsort(-off, kind="stable")[:DEFAULT_BLOCK].tolist())


def agreement_figure(m: np.ndarray, names: list[str], a: str, b: str) -> go.Figure:
    n = len(names)
    off = m.astype(float).copy()
    np.fill_diagonal(off, np.nan)
    off[off == 0] = np.nan  # no sample: white, not the palest orange
    diag = np.full(m.shape, np.nan)
    np.fill_diagonal(diag, m.diagonal())
    text = [[str(v) if v else "" for v in row] for row in m]
    fig = go.Figure([go.Heatmap(z=diag, x=names, y=names, colorscale=[[0, "#e0e0e0"], [1, "#bdbdbd"]], showscale=False,
                                hoverinfo="skip"),
                     go.Heatmap(z=off, x=names, y=names, colorscale=[[0, "#fdd0a2"], [1, "#f16913"]], zmin=0, showscale=False, text=text,
                                texttemplate="%{text}" if n <= 25 else None, hoverinfo="skip")])
    fig.add_trace(go.Heatmap(z=diag, x=names, y=names, colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
                             showscale=False, text=text, texttemplate="%{text}" if n <= 25 else None, hoverinfo="skip"))
    fig = views.clickable_cells(fig, m, names)
    fig.update_traces(hovertemplate=f"{a} %{{y}}<br>{b} %{{x}}<br>%{{text}} samples<br>click to highlight<extra></extra>",
                      selector={"type": "scatter"})
    fig.update_layout(height=min(640, 200 + 22 * n), xaxis_title=f"{b} predicts", yaxis_title=f"{a} predicts",
                      template="plotly_white", margin={"l": 10, "r": 10, "t": 20, "b": 10}, clickmode="event+select",
                      dragmode=False)
    fig.update_xaxes(type="category", side="top")
    fig.update_yaxes(type="category")
    return fig


def _agreement_clicked(cmp, b):
    def callback() -> None:
        cell = selection.heatmap_cell(st.session_state.get(S.CMP_AGREEMENT), [str(c) for c in cmp.class_names])
        if cell is None:
            return
        pa, pb = cell
        ref = cmp.reference
        mask = (ref.features.preds == pa) & (b.features.preds == pb)
        views.set_ids(P, [int(v) for v in ref.features.index[mask]],
                      f"predicted {cmp.class_names[pa]} by {ref.name} and {cmp.class_names[pb]} by {b.name}")
    return callback


def panel_layers(cmp, url, layer: str) -> None:
    b = other_model(cmp)
    ref = cmp.reference
    st.subheader(f"Where the representations diverge · {ref.name} against {b.name}", anchor="layers")
    with st.spinner("Extracting every layer and measuring linear CKA of each pair ..."):
        result = analysis.layer_similarity(cmp, b)
    layers_a, layers_b, cka, how = result["layers_a"], result["layers_b"], result["cka"], result["how"]
    paired = [(name, float(cka[i, layers_b.index(name)])) for i, name in enumerate(layers_a) if name in layers_b]
    lowest = min(paired, key=lambda t: t[1]) if paired else None
    first_low = next((name for name, v in paired if v < 0.9), None)
    story = ""
    if paired:
        story = (f"Same-layer CKA goes from {paired[0][1]:.3f} at `{paired[0][0]}` to {paired[-1][1]:.3f} at `{paired[-1][0]}`; "
                 f"**most different at `{lowest[0]}` ({lowest[1]:.3f})**"
                 + (f", first below 0.9 at `{first_low}`." if first_low else "; never below 0.9: the method changed the "
                    "representations little."))
    st.markdown(f"Linear CKA (Kornblith et al., 2019) between every layer of {ref.name} (rows) and of {b.name} (columns), on "
                f"the full-dimensional features of the same {len(ref.features)} {cmp.split} samples (conv maps average-pooled): "
                f"1 = the same representation up to rotation and scale, 0 = unrelated. Estimator: {', '.join(how)}. " + story)
    fig = go.Figure(go.Heatmap(z=cka, x=layers_b, y=layers_a, zmin=0, zmax=1, colorscale="Viridis",
                               text=np.round(cka, 2), texttemplate="%{text}" if len(layers_a) <= 8 else None,
                               hovertemplate=f"{ref.name} %{{y}}<br>{b.name} %{{x}}<br>CKA %{{z:.3f}}<extra></extra>",
                               colorbar={"title": "CKA"}))
    fig.update_layout(height=260 + 30 * len(layers_a), template="plotly_white", margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title=f"{b.name} layer", yaxis_title=f"{ref.name} layer")
    fig.update_yaxes(autorange="reversed")
    left, right = st.columns([1, 1])
    left.plotly_chart(fig, key="cmp_cka", config={"displaylogo": False})
    sep = result["separability"]
    depth = go.Figure()
    for name, values in sep.items():
        depth.add_trace(go.Scatter(x=result["depth_layers"], y=values["knn_accuracy"], mode="lines+markers",
                                   name=f"{name} k-NN accuracy"))
        depth.add_trace(go.Scatter(x=result["depth_layers"], y=values["silhouette"], mode="lines+markers",
                                   name=f"{name} silhouette", line={"dash": "dot"}))
    depth.update_layout(height=420, template="plotly_white", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                        title={"text": "How far each layer separates the classes, over depth (↑ better)", "font": {"size": 13}},
                        yaxis_title="score", legend={"orientation": "h", "y": -0.2})
    right.plotly_chart(depth, key="cmp_depth", config={"displaylogo": False})
    right.caption("k-NN accuracy (leave-one-out) and silhouette of each model's own top-level layers, full-dimensional "
                  "features (METHODS.md section 4).")


def panel_moved(cmp, url, layer: str) -> None:
    b = other_model(cmp)
    ref = cmp.reference
    st.subheader(f"What moved · neighbourhoods in {ref.name} and {b.name}", anchor="moved")
    url.seed(S.CMP_OVERLAP_K, "overlap_k", 10, parse=views_int(3, 50))
    k = int(st.slider("Neighbours compared (k)", 3, 50, key=S.CMP_OVERLAP_K))
    overlap = analysis.overlap(cmp, b, k)
    y = ref.features.labels
    st.markdown(f"For each sample, the share of its {k} nearest neighbours (full-dimensional `{cmp.layer}`, Euclidean) that "
                f"both models agree on (Jaccard): 1, the same neighbours; 0, all new. Median over the split: "
                f"**{np.median(overlap):.2f}**. Colour the views by it with *Colour by → neighbourhood overlap*; filter "
                "and sort the sample table by it.")
    rows = between.overlap_by_class(overlap, y, cmp.num_classes)
    worst = rows[: min(3, len(rows))]
    st.markdown("Lowest: " + "; ".join(f"class {cmp.class_names[r['class']]}: median overlap {r['median']:.2f}"
                                        for r in worst) + ".")
    table = pd.DataFrame([{"class": cmp.class_names[r["class"]], "n": r["n"], "median overlap": r["median"],
                           "mean overlap": r["mean"],
                           f"Δ recall ({b.name} − {ref.name})": float((b.features.preds[y == r["class"]] == r["class"]).mean()
                                                                      - (ref.features.preds[y == r["class"]] == r["class"]).mean())}
                          for r in rows])

    def ids_of(row: int):
        c = rows[(st.session_state.get(S.CMP_CLASS_PAGE + "_moved", 1) - 1) * CLASS_PAGE + row]["class"]
        return [int(v) for v in ref.features.index[y == c]], f"of class {cmp.class_names[c]} (neighbourhood overlap)"

    paged(url, table, S.CMP_CLASS_PAGE + "_moved", "moved_page",
          "classes, lowest median overlap first; click a row to highlight the class",
          key=S.CMP_OVERLAP_TABLE, on_select=_highlight_rows(S.CMP_OVERLAP_TABLE, ids_of), selection_mode="single-row")


def panel_clusters(cmp, url, layer: str) -> None:
    b = other_model(cmp)
    ref = cmp.reference
    st.subheader(f"Regression clusters · groups of samples that got worse in {b.name}", anchor="clusters")
    url.seed(S.CMP_N_CLUSTERS, "clusters", 20, parse=views_int(2, 200))
    n = int(st.number_input("Clusters (k-means on the reference's features)", 2, 200, key=S.CMP_N_CLUSTERS))
    with st.spinner("Clustering ..."):
        clusters = analysis.clusters(cmp, b, n)
    names = cmp.class_names
    worse = [r for r in clusters.rows if r["change"] < 0]
    st.markdown(f"k-means with {n} clusters on {ref.name}'s standardised `{cmp.layer}` features, ranked by the change of "
                f"accuracy from {ref.name} to {b.name}, worst first. **{len(worse)} of {len(clusters.rows)} clusters got "
                f"worse** (overall {ref.metrics['accuracy']:.3f} → {b.metrics['accuracy']:.3f}). Click a row: its samples "
                "light up in every view; *Colour by → regression cluster* paints the 8 worst.")
    table = pd.DataFrame([{"cluster": r["cluster"], "n": r["n"], f"{ref.name} acc": r["acc_a"], f"{b.name} acc": r["acc_b"],
                           "change": r["change"],
                           "main classes": ", ".join(f"{names[c]} ({k})" for c, k in r["top_classes"])} for r in clusters.rows])
    index = ref.features.index

    def ids_of(row: int):
        r = clusters.rows[row]
        return [int(v) for v in index[clusters.assign == r["cluster"]]], f"in cluster {r['cluster']} (change {r['change']:+.2f})"

    st.dataframe(table, hide_index=True, width="stretch", height=min(420, 35 * (len(table) + 1) + 3),
                 column_config=views.decimals(table), key=S.CMP_CLUSTERS,
                 on_select=_highlight_rows(S.CMP_CLUSTERS, ids_of), selection_mode="single-row")


def panel_separability(cmp, url, layer: str) -> None:
    st.subheader("Separability per layer (full-dimensional features)", anchor="separability")
    table = cmp.layer_table()
    labels = {key: label for label, key, _ in widgets.SEPARABILITY}
    df = pd.DataFrame(table).rename(columns={**labels, "n_used": "samples used"})
    st.dataframe(df, hide_index=True, width="stretch", column_config=views.decimals(df))
    st.caption("↑ higher is better, ↓ lower is better. The layers are chosen in the sidebar.")
    if st.toggle("Show as bars", key=S.CMP_LAYER_BARS):
        st.plotly_chart(layer_metrics_figure(table), key="cmp_layer_metrics")


def panel_flips(cmp, url, layer: str) -> None:
    ref = cmp.reference
    normalized = bool(st.session_state.get(S.CMP_NORMALIZED))
    for i, m in enumerate(cmp.models[1:]):
        st.subheader(f"{m.name} vs {ref.name}")
        left, right = st.columns([5, 6])
        delta = m.delta_normalized if normalized else m.delta
        shown = classes_for_matrix(cmp, np.abs(delta) + np.diag(np.abs(np.diag(delta))))
        sub = delta[np.ix_(shown, shown)]
        left.plotly_chart(figmemo.memo(delta_figure, sub, [cmp.class_names[c] for c in shown],
                                       title=f"confusion change ({m.name} − {ref.name})"), key=f"cmp_delta_{m.name}")
        left.caption(f"Blue: {m.name} is better there (more correct answers on the diagonal, fewer errors off it); red: "
                     "worse. Numbers: the raw change." + (f" The {len(shown)} classes that changed most, of "
                                                         f"{cmp.num_classes}." if len(shown) < cmp.num_classes else ""))
        right.markdown(mcnemar_sentence(ref.name, m.name, m.mcnemar))
        flips = flip_table(cmp, m)
        flips = flips.iloc[np.argsort(-np.abs(flips["net"].to_numpy()), kind="stable")].reset_index(drop=True)
        with right:
            paged(url, flips, f"{S.CMP_CLASS_PAGE}_flips_{m.name}", f"flips_page{i + 1}", "classes, largest net change first")


def panel_samples(cmp, url, layer: str) -> list[int]:
    """The cross-model sample table; returns the sample ids of the clicked rows."""
    st.subheader("Samples across models", anchor="samples")
    names = [m.name for m in cmp.models]
    class_names = cmp.class_names
    table = analysis.samples(cmp)
    b = other_model(cmp)
    overlap_k = int(st.session_state.get(S.CMP_OVERLAP_K) or 10)
    table = table.assign(**{"overlap": np.round(analysis.overlap(cmp, b, overlap_k), 3)})
    url.seed(S.CMP_F_FLIPPED, "flipped", False, parse=lambda t: t == "1")
    url.seed(S.CMP_F_WRONG_ALL, "wrong_all", False, parse=lambda t: t == "1")
    url.seed(S.CMP_F_MODEL, "conf_model", names[0], options=names)
    url.seed(S.CMP_F_CLASSES, "f_true", [], parse=lambda t: [int(v) for v in t.split(",") if v and 0 <= int(v) < len(class_names)])
    url.seed(S.CMP_F_PREDICTED, "f_pred", [], parse=lambda t: [int(v) for v in t.split(",") if v and 0 <= int(v) < len(class_names)])
    url.seed(S.CMP_F_OVERLAP, "f_overlap", 1.0, parse=lambda t: float(t))
    f1, f2, f3, f4 = st.columns([0.9, 1.4, 1.4, 1.6])
    flipped = f1.checkbox("Flipped", key=S.CMP_F_FLIPPED, help="Right in some models, wrong in others.")
    wrong_all = f1.checkbox("Wrong in all", key=S.CMP_F_WRONG_ALL)
    true_classes = f2.multiselect("True class", list(range(len(class_names))), format_func=lambda i: class_names[i],
                                  key=S.CMP_F_CLASSES, placeholder="any (type to search)")
    predicted = f3.multiselect("Predicted class", list(range(len(class_names))), format_func=lambda i: class_names[i],
                               key=S.CMP_F_PREDICTED, placeholder="any (type to search)")
    confidence = f4.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key=S.CMP_F_CONFIDENCE)
    conf_model = f4.selectbox("Predicted class and confidence of", names, key=S.CMP_F_MODEL)
    max_overlap = f2.slider(f"Neighbourhood overlap ≤ ({cmp.reference.name} vs {b.name}, k={overlap_k})", 0.0, 1.0,
                            step=0.05, key=S.CMP_F_OVERLAP)
    shown = filter_samples(table, flipped=flipped, wrong_in_all=wrong_all, true_classes=true_classes, predicted=predicted,
                           model=conf_model, confidence=confidence)
    shown = shown[shown["overlap"] <= max_overlap + 1e-9]
    source = views.highlight_source(P)
    if source and source[0] != "table" and (flipped or wrong_all or true_classes or predicted or max_overlap < 1):
        st.caption("The filters narrow this table only; the highlight above stays as it is.")
    visible = [c for c in shown.columns if not c.startswith("_")]
    st.caption(f"{len(shown)} of {len(table)} samples · click a column header to sort (e.g. by overlap) · click rows to "
               "highlight them in every view (one row also shows its neighbours).")
    column_config = {f"{n} conf": st.column_config.NumberColumn(f"{n} conf", format="%.3f") for n in names}
    column_config["overlap"] = st.column_config.NumberColumn("overlap", format="%.2f",
                                                             help="Jaccard of the k nearest neighbours in the two models")
    st.dataframe(shown[visible], hide_index=True, width="stretch", height=min(300, 35 * (len(shown) + 1) + 3),
                 on_select=_table_rows_clicked, selection_mode="multi-row", key=S.CMP_TABLE, column_config=column_config)
    table_ids = [int(shown["sample"].iloc[r]) for r in selection.table_rows(S.CMP_TABLE) if r < len(shown)]
    if st.button(f"Highlight these {len(shown)} rows in every view", key=S.CMP_HIGHLIGHT_ROWS,
                 disabled=len(shown) == 0 or len(shown) == len(table),
                 help=f"Links carry up to {views.MAX_URL_IDS} ids in the URL; a larger highlight is saved on the server and "
                      "the link carries its short id, so it reopens whole."):
        views.set_ids(P, [int(v) for v in shown["sample"]], "from the filtered sample table")
    return table_ids


def _table_rows_clicked() -> None:
    """Rows clicked in the sample table drive the highlight; a selection emptied because the table
    changed (a filter ticked) does not clear another source's highlight (newcomer's pass, issue 20)."""
    if selection.table_rows(S.CMP_TABLE):
        st.session_state[S.highlight_source_key(P)] = ("table", 0)
    elif views.highlight_source(P) == ("table", 0):
        views.clear_highlight(P)


PANEL_FUNCS = {"per_class": panel_per_class, "pairs": panel_pairs, "agreement": panel_agreement, "layers": panel_layers,
               "moved": panel_moved, "clusters": panel_clusters, "separability": panel_separability, "flips": panel_flips,
               "samples": panel_samples}


# --------------------------------------------------------------------------- downloads


def download_buttons(cmp) -> None:
    """The figures are built from values fixed now (the colour, the normalisation, the colours of
    the points): the deferred download runs outside this run, where widget state may be gone
    (the newcomer's KeyError ``cmp_color``)."""
    color_by, paint = st.session_state.get("_cmp_download_args", ("true", None))
    normalized = bool(st.session_state.get(S.CMP_NORMALIZED))
    layer_table = cmp.layer_table()
    figures = partial(_download_figures, cmp, color_by, normalized, paint, layer_table)
    st.subheader("Downloads")
    downloads.buttons(cmp, figures)


def _download_figures(cmp, color_by, normalized, paint, layer_table) -> list:
    return views.figures_for_download(cmp, color_by, normalized, paint) + [layer_metrics_figure(layer_table)]
