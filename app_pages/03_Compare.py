"""Compare 2-3 models on the same data: the headline (what changed, and is it real), aligned
projections with linked selections, the cross-model sample table, a sample's neighbours in every
model, clickable confusion matrices, per-class scores and deltas, flips, separability, downloads.
Every view setting lives in the URL."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from asl_core.models import embedding_layer
from asl_core.report.figures import delta_figure, layer_metrics_figure, per_class_delta_figure
from asl_core.report.tables import (filter_samples, flip_table, headline_lines, mcnemar_sentence, neighbour_sentence,
                                    per_class_table, summary_table)
from ui import analysis, downloads, figmemo, images, library, page, selection, views, widgets
from ui import state as S
from ui.errors import user_errors
from ui.urlstate import UrlState

settings = page.setup("Compare")
st.title("Compare models")

folder = settings.checkpoints_dir
files = [p.name for p in library.list_checkpoints(folder)]
if len(files) < 2:
    st.info("Comparing needs at least two checkpoints in the library (see the Checkpoints page).")
    st.stop()

url = UrlState(S.CMP_PREFIX)
P = S.CMP_PREFIX


def parse_models(text: str) -> list[str]:
    found, unknown = library.resolve_models(files, text)
    if unknown:
        url.warnings.append(f"`models=` names {', '.join(repr(u) for u in unknown)}, not in the library "
                            f"(it has {', '.join(f.removesuffix('.safetensors') for f in files)}).")
    if len(found) < 2:
        raise ValueError("a comparison needs two or three models of the library")
    return found[:3]


with st.sidebar, user_errors():
    url.seed(S.CMP_MODELS, "models", library.default_comparison(files), parse=parse_models,
             dump=lambda fs: [f.removesuffix(".safetensors") for f in fs])
    chosen = st.multiselect("Models (first = reference)", files, max_selections=3, key=S.CMP_MODELS)
    if len(chosen) < 2:
        st.warning("Pick 2 or 3 models.")
        st.stop()
    paths = [library.library_path(folder, f) for f in chosen]
    url.seed(S.CMP_SPLIT, "split", "test", options=widgets.SPLITS)
    split = st.selectbox("Split", widgets.SPLITS, key=S.CMP_SPLIT)
    layers = analysis.shared_layers(paths)
    if not layers:
        st.error("These models share no layer names; compare models of one architecture family.")
        st.stop()
    default = embedding_layer(library.load_model(paths[0]).meta.arch, layers)
    url.seed(S.CMP_LAYER, "layer", default if default in layers else layers[0], options=layers)
    layer_label = widgets.layer_format_func(*[library.load_model(p) for p in paths])
    layer = st.selectbox("Layer (all models)", layers, key=S.CMP_LAYER, help="Only layers every chosen model has.",
                         format_func=layer_label)
    widgets.seed_projection(url, P)
    config = widgets.projection_config(P)
    url.seed(S.CMP_METRIC_LAYERS, "metric_layers", widgets.table_layers(layers, layer),
             parse=lambda t: [v for v in t.split(",") if v in layers])
    metric_layers = st.multiselect("Layers in the separability table", layers, key=S.CMP_METRIC_LAYERS, format_func=layer_label)

for warning in url.warnings:
    st.warning(warning)

with user_errors():
    cmp = analysis.run(paths, split, layer, config, metric_layers=list(dict.fromkeys([layer, *metric_layers])))
names, ref = [m.name for m in cmp.models], cmp.reference
class_names = cmp.class_names
split_data = library.split_of(ref.features, library.load_model(paths[0]).meta)

st.caption(f"{cmp.dataset.get('name', '')} · {split} split, {len(ref.features)} samples · layer `{layer}` · "
           f"{config.method.upper()} aligned to {ref.name} ({config.align})")
for note in cmp.notes:
    st.info(note)

# --- 1. the headline: what changed, and is it real
st.subheader(f"What changed against {ref.name}")
for h, col in zip(analysis.headlines(cmp), st.columns(len(cmp.models) - 1)):
    with col.container(border=True):
        st.markdown(f"#### {h.model}")
        st.markdown("\n\n".join(headline_lines(h, class_names)))
st.dataframe(summary_table(cmp), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(k, format="%.3f") for k in ("accuracy", "macro-F1", "trustworthiness")})

def _needs_full_run() -> None:
    """The row-normalised toggle also changes the delta matrices below the linked views."""
    st.session_state[S.CMP_FULL_RUN] = True


@st.fragment
def linked_views() -> None:
    """Everything a selection changes: the projections, confusion matrices, sample table, the
    highlighted samples and their neighbours. A fragment: a lasso, a click or a filter reruns
    only this part, not the headline, per-class and delta sections below."""
    if st.session_state.pop(S.CMP_FULL_RUN, False):
        st.rerun(scope="app")
    # --- the linked views are drawn after the sample table (which can drive the highlight), above it
    views_box = st.container()

    # --- 4. the cross-model sample table
    st.subheader("Samples across models", anchor="samples")
    table = analysis.samples(cmp)
    url.seed(S.CMP_F_FLIPPED, "flipped", False, parse=lambda t: t == "1")
    url.seed(S.CMP_F_WRONG_ALL, "wrong_all", False, parse=lambda t: t == "1")
    url.seed(S.CMP_F_MODEL, "conf_model", names[0], options=names)
    f1, f2, f3, f4 = st.columns([0.9, 1.4, 1.4, 1.6])
    flipped = f1.checkbox("Flipped", key=S.CMP_F_FLIPPED, help="Right in some models, wrong in others.")
    wrong_all = f1.checkbox("Wrong in all", key=S.CMP_F_WRONG_ALL)
    true_classes = f2.multiselect("True class", list(range(len(class_names))), format_func=lambda i: class_names[i],
                                  key=S.CMP_F_CLASSES, placeholder="any")
    predicted = f3.multiselect("Predicted class", list(range(len(class_names))), format_func=lambda i: class_names[i],
                               key=S.CMP_F_PREDICTED, placeholder="any")
    confidence = f4.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key=S.CMP_F_CONFIDENCE)
    conf_model = f4.selectbox("Predicted class and confidence of", names, key=S.CMP_F_MODEL)
    shown = filter_samples(table, flipped=flipped, wrong_in_all=wrong_all, true_classes=true_classes, predicted=predicted,
                           model=conf_model, confidence=confidence)
    visible = [c for c in shown.columns if not c.startswith("_")]
    st.caption(f"{len(shown)} of {len(table)} samples · click rows to highlight them in every view (one row also shows its "
               "neighbours below).")
    column_config = {f"{n} conf": st.column_config.NumberColumn(f"{n} conf", format="%.3f") for n in names}
    st.dataframe(shown[visible], hide_index=True, width="stretch", height=min(300, 35 * (len(shown) + 1) + 3), on_select=selection.remember(("table", 0), P),
                 selection_mode="multi-row", key=S.CMP_TABLE, column_config=column_config)
    table_ids = [int(shown["sample"].iloc[r]) for r in selection.table_rows(S.CMP_TABLE) if r < len(shown)]
    if st.button(f"Highlight these {min(len(shown), views.MAX_URL_IDS)} rows in every view", key=S.CMP_HIGHLIGHT_ROWS,
                 disabled=len(shown) == 0 or len(shown) == len(table)):
        views.set_ids(P, [int(v) for v in shown["sample"].iloc[:views.MAX_URL_IDS]])

    # a link's highlight (hl= ids or cell=view-true-pred), when the URL speaks
    views.apply_link_highlight(url, P, ref.features.index, split)
    hl = views.highlight(cmp, P, table_ids)
    url.set_extra("hl", hl.url["hl"])
    url.set_extra("cell", hl.url["cell"])

    # --- the linked views (scatters + confusions), filled now that the highlight is known
    with views_box:
        st.subheader("Projections (aligned)")
        top = st.columns([3, 1])
        widgets.seed_color(url, S.CMP_COLOR)
        color_by = widgets.color_by(S.CMP_COLOR, top[0])
        if top[1].button("Clear highlight", key=S.CMP_CLEAR):
            views.clear_highlight(P)
            st.rerun()
        widgets.seed_look(url, P, len(class_names))
        look = widgets.scatter_look(P, class_names, config.method)
        views.scatter_row([analysis.view_arrays(m) for m in cmp.models], [views.view_title(m) for m in cmp.models], class_names, color_by, hl.ids, P, source=hl.source_view, look=look)
        st.caption(views.TRUST_NOTE + " Drag a box or lasso: the same samples light up in every view.")

        st.subheader("Confusion matrices")
        st.caption("Click a cell: its samples (true = row, predicted = column) are highlighted in every view and listed below.")
        url.seed(S.CMP_NORMALIZED, "normalized", False, parse=lambda t: t == "1")
        st.toggle("Row-normalised", key=S.CMP_NORMALIZED, on_change=_needs_full_run)
        normalized = st.session_state[S.CMP_NORMALIZED]
        views.confusion_row([m.confusion_normalized if normalized else m.confusion for m in cmp.models], names, class_names,
                            P, normalized=normalized, cell=hl.cell)

    # --- what is highlighted, with every model's prediction
    st.subheader(hl.title, anchor="highlighted")
    if hl.ids:
        images.compare_inspector(split_data, hl.ids, cmp.models, class_names)

    # --- 5. neighbours across models
    st.subheader("Neighbours across models", anchor="neighbours")
    if hl.ids and len(hl.ids) == 1:
        sample = hl.ids[0]
        url.seed(S.CMP_NEIGHBOURS_K, "k", 8, parse=int)
        k = st.slider("Neighbours (k)", 3, 16, key=S.CMP_NEIGHBOURS_K)
        st.caption(f"The {k} nearest samples of #{sample} in each model's full-dimensional `{layer}` features "
                   "(Euclidean; not the 2-D picture). ✗: a neighbour of another class.")
        with user_errors():
            for n in analysis.neighbours(cmp, sample, k):
                st.markdown(neighbour_sentence(n, class_names))
                images.neighbour_strip(split_data, n, class_names, columns=k + 1)
    else:
        st.caption("Select one sample (one row of the sample table, or a small lasso around one point) to see which classes surround it in "
                   "each model.")

    url.republish()


linked_views()

# --- 2. per class


@st.fragment
def per_class() -> None:
    """The per-class chart and table; choosing F1, recall or precision reruns only this part."""
    st.subheader("Per class", anchor="per-class")
    per_class_rows = analysis.per_class(cmp)
    counts = {r["class"]: (r["train_count"], r["tail"]) for r in per_class_rows}
    labels = [f"{n} · {counts[c][0]} train" + (" · tail" if counts[c][1] else "") for c, n in enumerate(class_names)]
    url.seed(S.CMP_DELTA_METRIC, "per_class", "F1", options=["F1", "recall", "precision"])
    metric = st.radio("Change in", ["F1", "recall", "precision"], horizontal=True, key=S.CMP_DELTA_METRIC)
    key = {"F1": "d_f1", "recall": "d_recall", "precision": "d_precision"}[metric]
    deltas = {m.name: [r[key] for r in per_class_rows if r["model"] == m.name] for m in cmp.models[1:]}
    st.plotly_chart(figmemo.memo(per_class_delta_figure, labels, deltas, metric=metric, reference=ref.name),
                    key="cmp_per_class_delta")
    st.caption("Training samples per class come from the dataset spec the checkpoints record; tail = the 3 smallest classes "
               "of a long-tailed training set. Test n is the number of samples of each class in this split.")
    per_class_df = per_class_table(per_class_rows, ({"F1": "f1"}.get(metric, metric),))
    st.dataframe(per_class_df, hide_index=True, width="stretch", column_config=views.decimals(per_class_df))
    url.republish()


per_class()

# --- 3. deltas and flips against the reference
for m in cmp.models[1:]:
    st.subheader(f"{m.name} vs {ref.name}")
    left, right = st.columns([5, 6])
    left.plotly_chart(figmemo.memo(delta_figure, m.delta_normalized if st.session_state[S.CMP_NORMALIZED] else m.delta,
                                   class_names, title=f"confusion change ({m.name} − {ref.name})"), key=f"cmp_delta_{m.name}")
    left.caption(f"Blue: {m.name} is better there (more correct answers on the diagonal, fewer errors off it); red: "
                 "worse. Numbers: the raw change.")
    right.markdown(mcnemar_sentence(ref.name, m.name, m.mcnemar))
    right.dataframe(flip_table(cmp, m), hide_index=True, width="stretch")

st.subheader("Separability per layer (full-dimensional features)")
layer_table = cmp.layer_table()
layer_df = pd.DataFrame(layer_table)
st.dataframe(layer_df, hide_index=True, width="stretch", column_config=views.decimals(layer_df))
if st.toggle("Show as bars", key=S.CMP_LAYER_BARS):  # five subplots: drawn on request to keep the page quick
    st.plotly_chart(layer_metrics_figure(layer_table), key="cmp_layer_metrics")

st.subheader("Downloads")
downloads.buttons(cmp, lambda: views.figures_for_download(cmp, widgets.COLOR_BY[st.session_state[S.CMP_COLOR]],
                                                          st.session_state[S.CMP_NORMALIZED])
                  + [layer_metrics_figure(layer_table)])

url.publish()
